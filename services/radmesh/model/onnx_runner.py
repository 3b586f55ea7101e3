"""The exported Universal Model run in-process with ONNX Runtime: a pipeline runner.

``OnnxRunner(path, threads=2)(windows, class_embedding)`` → logits, the runner
interface of :func:`radmesh.model.pipeline.segment`:

- ``windows``: (B, 1, 96, 96, 96) float32 in [0, 1];
- ``class_embedding``: (K, E) float32;
- returns (B, K, 96, 96, 96) float32 logits.

The same graph runs in Triton's Python backend on CPU nodes; this class is what
that backend's ``model.py`` and the CLI use. One session per runner; ``__call__``
is thread-safe (ONNX Runtime sessions are).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from radmesh.common.errors import FailedPreconditionError, InvalidInputError

WINDOW = 96


class OnnxRunner:
    """An ONNX Runtime session on an exported graph (see :mod:`radmesh.model.export`).

    ``threads``: intra-op threads (None: ONNX Runtime's default, one per core).
    ``providers``: ONNX Runtime execution providers (default CPU).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FailedPreconditionError(f"ONNX model {self.path} not found (make it with `radmesh export`)")
        if threads is not None and int(threads) < 1:
            raise InvalidInputError(f"threads must be at least 1, got {threads}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads) if threads else 0
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers or ["CPUExecutionProvider"])
        except Exception as ex:  # noqa: BLE001 - corrupt or foreign file
            first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
            raise FailedPreconditionError(f"{self.path}: ONNX Runtime cannot load it ({first[:300]})") from ex
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if set(inputs) != {"image", "class_embedding"} or outputs != ["logits"]:
            raise FailedPreconditionError(
                f"{self.path}: expected inputs image, class_embedding and output logits, got inputs "
                f"{sorted(inputs)} and outputs {outputs}")
        e = inputs["class_embedding"].shape[1]
        if not isinstance(e, int):
            raise FailedPreconditionError(f"{self.path}: class_embedding has no fixed embedding size ({e!r})")
        self.embed_dim = int(e)
        self.threads = threads
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        # windows per call at most (None = any): 1 for a graph whose windows share batch statistics
        mb = self.metadata.get("radmesh.max_batch_size", "0")
        self.max_batch_size = int(mb) if mb.isdigit() and int(mb) > 0 else None

    def __call__(self, windows: np.ndarray, class_embedding: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(windows, dtype=np.float32)
        e = np.ascontiguousarray(class_embedding, dtype=np.float32)
        if x.ndim != 5 or x.shape[1:] != (1, WINDOW, WINDOW, WINDOW):
            raise InvalidInputError(f"windows must be (B, 1, {WINDOW}, {WINDOW}, {WINDOW}), got {x.shape}")
        if e.ndim != 2 or e.shape[1] != self.embed_dim or e.shape[0] < 1:
            raise InvalidInputError(f"class_embedding must be (K, {self.embed_dim}) with K ≥ 1, got {e.shape}")
        return self.session.run(["logits"], {"image": x, "class_embedding": e})[0]

    def __repr__(self) -> str:
        return f"OnnxRunner({str(self.path)!r}, threads={self.threads})"
