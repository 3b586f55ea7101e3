"""Triton Python backend: the radmesh Universal Model on CPU, with ONNX Runtime.

Per request: ``image`` (B, 1, 96, 96, 96) float32 and ``class_embedding`` (B, K, E)
float32 (each window's K×E class table; clients repeat one table B times) →
``logits`` (B, K, 96, 96, 96) float32.

The exported CPU graph takes one (K, E) table for a whole batch of windows, so
``execute`` gathers the windows of all the requests Triton hands it (dynamic
batching), groups those whose class tables are byte-identical, runs each group in
as few ONNX Runtime calls as the graph allows (its ``radmesh.max_batch_size``
metadata: 1 for a backbone whose windows share batch statistics) and scatters the
logits back per request. A malformed request gets an error response of its own;
the others in the batch are answered normally.

Config ``parameters``: ``onnx_path`` (absolute, or relative to this version folder)
and ``intra_op_threads`` (0: one per core); ``radmesh serve triton`` writes both.
The stub runs the virtualenv's Python, so ``radmesh`` imports here.

Tensors cross the stub boundary by DLPack, not ``as_numpy()`` / ``Tensor(name, ndarray)``:
the stub's numpy bridge is compiled against numpy 1 and, with numpy 2 (which radmesh
uses), reads a dtype's item size from the wrong offset: inputs come back as zeros and
outputs as empty tensors, silently. DLPack carries pointer, dtype and shape itself.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from radmesh.model.onnx_runner import WINDOW, OnnxRunner

WINDOW_SHAPE = (1, WINDOW, WINDOW, WINDOW)
# The stub marks a consumed DLPack capsule "used_dlpack"; numpy's capsule destructor only
# recognises the standard "used_dltensor" and reports every other name as an error (harmless,
# one line per response). We rename the capsule to the standard once the stub holds the tensor.
_USED_DLTENSOR = ctypes.c_char_p(b"used_dltensor")
_capsule_set_name = ctypes.pythonapi.PyCapsule_SetName
_capsule_set_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_set_name.restype = ctypes.c_int


def _gather(results: dict, r: int, n: int) -> np.ndarray:
    """Request r's logits (n, K, 96, 96, 96): the call's output itself when one call ran exactly
    this request's windows in order (the usual case; no 57 MB-per-window copy), else stacked."""
    first, _ = results[(r, 0)]
    if first.shape[0] == n and all(results[(r, b)][0] is first and results[(r, b)][1] == b for b in range(n)):
        return first
    return np.stack([results[(r, b)][0][results[(r, b)][1]] for b in range(n)])


def _output(name: str, array: np.ndarray):
    """A Triton output tensor that takes ``array`` (C-contiguous) without a copy, via DLPack."""
    capsule = np.ascontiguousarray(array).__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _capsule_set_name(capsule, _USED_DLTENSOR)
    return tensor


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        onnx_path = Path(params.get("onnx_path") or "model.onnx")
        if not onnx_path.is_absolute():
            onnx_path = Path(args["model_repository"]) / args["model_version"] / onnx_path
        threads_text = params.get("intra_op_threads", "0") or "0"
        if not threads_text.isdigit():
            raise pb_utils.TritonModelException(f"parameter intra_op_threads must be a whole number, "
                                                f"got {threads_text!r}")
        self.runner = OnnxRunner(onnx_path, threads=int(threads_text) or None)
        declared_e = next(i["dims"][-1] for i in config["input"] if i["name"] == "class_embedding")
        if int(declared_e) != self.runner.embed_dim:
            raise pb_utils.TritonModelException(
                f"config declares class_embedding width {declared_e}, the graph {onnx_path} takes "
                f"{self.runner.embed_dim}")
        self.chunk = self.runner.max_batch_size or int(config.get("max_batch_size") or 1)
        pb_utils.Logger.log_info(f"universal_seg: {onnx_path.name}, E={self.runner.embed_dim}, "
                                 f"{threads_text} thread(s), {self.chunk} window(s) per call")

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        groups: dict[tuple[int, bytes], list[tuple[int, int]]] = {}   # (K, table bytes) → [(request, window)]
        images, tables = {}, {}
        for r, request in enumerate(requests):
            try:
                image, table = self._inputs(request)
            except ValueError as ex:
                # INVALID_ARGUMENT, like Triton's own shape checks (the status a client sees)
                responses[r] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(ex), pb_utils.TritonError.INVALID_ARG))
                continue
            images[r], tables[r] = image, table
            for b in range(image.shape[0]):
                groups.setdefault((table.shape[1], table[b].tobytes()), []).append((r, b))
        results: dict[tuple[int, int], tuple[np.ndarray, int]] = {}    # (request, window) → (call output, row)
        for members in groups.values():
            r0, b0 = members[0]
            table = tables[r0][b0]
            for start in range(0, len(members), self.chunk):
                part = members[start:start + self.chunk]
                try:
                    out = self.runner(np.stack([images[r][b] for r, b in part]), table)
                except Exception as ex:  # noqa: BLE001 - answer the affected requests, keep serving
                    for r, _ in part:
                        if responses[r] is None:
                            responses[r] = pb_utils.InferenceResponse(
                                error=pb_utils.TritonError(f"inference failed: {type(ex).__name__}: {ex}"))
                    continue
                results.update({(r, b): (out, j) for j, (r, b) in enumerate(part)})
        for r in range(len(requests)):
            if responses[r] is None:
                responses[r] = pb_utils.InferenceResponse(output_tensors=[_output("logits", _gather(results, r,
                                                                                                  len(images[r])))])
        return responses

    def _inputs(self, request) -> tuple[np.ndarray, np.ndarray]:
        """(image (B, 1, 96, 96, 96), class tables (B, K, E)) of a request, or ValueError naming the problem."""
        image_t = pb_utils.get_input_tensor_by_name(request, "image")
        table_t = pb_utils.get_input_tensor_by_name(request, "class_embedding")
        if image_t is None or table_t is None:
            raise ValueError("a request needs both inputs: image and class_embedding")
        image, table = np.from_dlpack(image_t), np.from_dlpack(table_t)     # read-only views, no copy
        e = self.runner.embed_dim
        if image.ndim != 5 or image.shape[1:] != WINDOW_SHAPE or image.dtype != np.float32:
            raise ValueError(f"image must be float32 (B, {', '.join(map(str, WINDOW_SHAPE))}), "
                             f"got {image.dtype} {image.shape}")
        if table.ndim != 3 or table.shape[0] != image.shape[0] or table.shape[1] < 1 or table.shape[2] != e:
            raise ValueError(f"class_embedding must be (B={image.shape[0]}, K ≥ 1, {e}), got {table.shape}")
        if not np.isfinite(table).all():
            raise ValueError("class_embedding holds NaN or infinite values")
        return image, table

    def finalize(self) -> None:
        self.runner = None
