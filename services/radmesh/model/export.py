"""Exporting the Universal Model to ONNX: the graph Triton serves (ONNX Runtime on CPU, TensorRT on GPU).

``export_onnx(model, path, embed_dim)`` writes one graph:

- inputs ``image`` (B, 1, 96, 96, 96) float32 in [0, 1] and ``class_embedding`` (K, E) float32;
- output ``logits`` (B, K, 96, 96, 96) float32;
- B (``batch``) and K (``num_classes``) dynamic; the window is fixed at 96³.

``embedding_layout`` says how the class table enters the graph:

``"shared"`` (default; ONNX Runtime, in-process and in Triton's Python backend)
    ``class_embedding`` (K, E): one table for every window of the batch.
``"per_window"`` (the TensorRT plan Triton serves on GPU, :func:`export_for_tensorrt`)
    ``class_embedding`` (B, K, E): each window its own table. TensorRT gives every input
    the batch dimension, and Triton's dynamic batcher concatenates requests of equal K
    along it whatever their tables, so each window must carry, and use, its own; a
    client repeats its K×E table once per window. (Using row 0 for all windows would
    answer a request batched behind another with the other's classes.) Verified window
    by window against PyTorch with a different random table per window.

It is checked with ``onnx.checker`` (full check, with shape inference) and run with
ONNX Runtime against the PyTorch model on seeded random inputs of (B, K) = (1, 1) and
(2, 5) — both dynamic dimensions at one and above one (a published backbone's window costs
10–30 s on a CPU, so each extra shape is a minute of a user's first run); the largest absolute logit difference is returned
(:attr:`ExportResult.max_abs_diff`) and must be ≤ ``tolerance`` (1e-3), else
nothing is written and :class:`ExportVerificationError` says by how much it missed.

How the graph is made. The trunk — backbone, pooled-feature and text projections,
controller (per class and image the 153 parameters of a 3-layer 1×1×1 head) and the
8-channel full-resolution feature — is traced by PyTorch's TorchScript-based
exporter (opset 17; it keeps B and K symbolic). The dynamic heads are then appended
as plain ONNX nodes, in one of two forms (``heads``):

``"chunked"`` (default; for ONNX Runtime on CPU)
    A ``Loop`` over slabs of ``chunk_voxels`` voxels (1152: 768 iterations per
    window); each iteration runs the three layers of all K heads on its slab
    ((B, 8K, 8) · (B, 8, n) MatMul, then two (B, K, ·, 8) · (B, K, 8, n) MatMuls with
    bias and ReLU), so the 8K-channel intermediates stay in cache. For K = 32 the
    whole-window intermediates are ≈ 0.9 GB each; PyTorch's einsum form exported
    as-is makes ONNX Runtime use 7 GB and run 2–3× slower.
``"matmul"`` (for TensorRT)
    The same three MatMul layers over the whole window at once. TensorRT fuses
    them and a GPU has the bandwidth; ``scripts/build_trt_plan.sh`` takes either
    graph, this one is the simpler for TensorRT's parser.

Both compute exactly the published arithmetic (``radmesh.model.network``); the
comparison with PyTorch is the proof. The graph carries ``metadata_props``:
``radmesh.format``, ``radmesh.embed_dim``, ``radmesh.window``, ``radmesh.heads``, ``radmesh.embedding_layout``,
``radmesh.max_abs_diff``, ``radmesh.frame`` (the frame the weights were trained in; the
graph takes and returns radmesh's whatever it is, :mod:`radmesh.model.frames`),
``radmesh.max_batch_size`` ("1" when a window's logits depend on
the other windows of its batch — the published U-Net's batch-statistics norm — else "0":
any batch).
"""

from __future__ import annotations

import copy
import io
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.fileio import atomic_output
from radmesh.model.frames import NATIVE, from_model_frame, to_model_frame
from radmesh.model.network import BIAS_NUMS, HEAD_CHANNELS, TEXT_FEATURES, WEIGHT_NUMS
from radmesh.model.pipeline import batch_independent

log = logging.getLogger(__name__)

WINDOW = 96
DEFAULT_OPSET = 17
HEADS = ("chunked", "matmul")
LAYOUTS = ("shared", "per_window")      # class_embedding (K, E) | (B, K, E); see the module docstring
DEFAULT_CHUNK_VOXELS = 1152          # divides 96³; 8K × 1152 float32 = 1.2 MB for K = 32
FORMAT = "radmesh-universal-seg-onnx-1"
INPUT_IMAGE, INPUT_EMBEDDING, OUTPUT_LOGITS = "image", "class_embedding", "logits"
VERIFY_SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (2, 5))   # (B, K)
TOLERANCE = 1e-3


class ExportVerificationError(FailedPreconditionError):
    """The exported graph does not reproduce the PyTorch model within the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    opset: int
    heads: str
    embed_dim: int
    max_abs_diff: float | None        # over VERIFY_SHAPES; None when verify=False
    checked_shapes: tuple[tuple[int, int], ...]   # (B, K) pairs compared


class _TwoPassGroupNorm(nn.Module):
    """GroupNorm written out as mean, centred second moment, scale and shift.

    The TorchScript exporter turns ``nn.GroupNorm`` into ONNX ``InstanceNormalization``,
    whose ONNX Runtime CPU kernel accumulates a 96³ group's statistics in a way that
    loses precision: on trained weights the 8-channel full-resolution GroupNorm before the
    heads was off by 2.8e-3 (PyTorch float32: 1e-6 against float64), 1.6e-3 in the logits,
    and one ReduceMean over the group is no better. Two passes (mean, then the mean of
    squared deviations), each reduced one axis at a time, bring that layer to ≈1e-5.
    Same parameters, same arithmetic (inputs other than 5-D fall back to ``F.group_norm``).
    """

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.num_groups, self.eps, self.affine = gn.num_groups, gn.eps, gn.affine
        self.weight, self.bias = gn.weight, gn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        # (B, G, C/G · D, H, W): means over W, then H, then the rest, so no float32 sum runs
        # over more than max(C/G · D, H, W) terms.
        g = x.reshape(x.shape[0], self.num_groups, -1, x.shape[-2], x.shape[-1])
        centred = g - _mean_by_axis(g)
        var = _mean_by_axis(centred * centred)
        y = (centred / torch.sqrt(var + self.eps)).reshape(x.shape)
        if self.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y


def _mean_by_axis(g: torch.Tensor) -> torch.Tensor:
    """Mean of (B, G, R, H, W) over its last three axes, one axis at a time (keepdim)."""
    return g.mean(dim=4, keepdim=True).mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)


def _with_two_pass_group_norms(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose GroupNorms are :class:`_TwoPassGroupNorm` (the original is untouched)."""
    out = copy.deepcopy(module)
    for name, child in list(out.named_modules()):
        for cname, c in list(child.named_children()):
            if isinstance(c, nn.GroupNorm):
                setattr(child, cname, _TwoPassGroupNorm(c))
    return out


class _Trunk(nn.Module):
    """Everything of UniversalModel.forward up to the dynamic heads.

    ``forward(image (B,1,D,H,W), class_embedding (K,E) or (B,K,E))`` → (params (B, K, 153),
    feature (B, 8, D·H·W)); a (B, K, E) table gives window b the classes of row b.
    Mirrors :meth:`radmesh.model.network.UniversalModel.forward`; the export's comparison
    with the full model catches any drift. Works on a copy of the model with
    export-friendly GroupNorms (:class:`_TwoPassGroupNorm`).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = _with_two_pass_group_norms(model)

    def forward(self, image: torch.Tensor, class_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        bottleneck, decoder = m.backbone(to_model_frame(image, m.frame))
        b, k = image.shape[0], class_embedding.shape[-2]
        pooled = m.GAP(bottleneck).flatten(1)
        task = F.relu(m.text_to_vision(class_embedding))                 # (K, 256) or (B, K, 256)
        if task.dim() == 2:
            task = task[None, :, :].expand(b, k, TEXT_FEATURES)
        cond = torch.cat([pooled[:, None, :].expand(b, k, TEXT_FEATURES), task], dim=2)
        params = cond @ m.controller.weight.flatten(1).t() + m.controller.bias
        feature = from_model_frame(m.precls_conv(decoder), m.frame).flatten(2)
        return params, feature


def export_onnx(model: nn.Module, path: str | os.PathLike, embed_dim: int | None = None,
                opset: int = DEFAULT_OPSET, *, heads: str = "chunked", chunk_voxels: int = DEFAULT_CHUNK_VOXELS,
                embedding_layout: str = "shared", verify: bool = True, verify_shapes: Sequence[tuple[int, int]] = VERIFY_SHAPES,
                tolerance: float = TOLERANCE, seed: int = 0, metadata: Mapping[str, str] | None = None
                ) -> ExportResult:
    """Export ``model`` (a :class:`~radmesh.model.network.UniversalModel`) to ``path`` (see module docstring).

    ``embed_dim``: E of the class table (default: ``model.embed_dim``; a mismatch is an error).
    With ``verify`` the graph is compared with the model on random inputs of each (B, K) in
    ``verify_shapes`` before it is moved into place; the file at ``path`` appears only if
    the check passes. ``metadata``: extra ``metadata_props`` (e.g. ``radmesh.model_version``,
    ``radmesh.classes``, ``radmesh.encoder_id`` from the weights' meta), strings.
    ``embedding_layout``: ``"shared"`` (K, E) or ``"per_window"`` (B, K, E) class tables.
    """
    import onnx

    if heads not in HEADS:
        raise InvalidInputError(f"heads must be one of {', '.join(HEADS)}, got {heads!r}")
    if embedding_layout not in LAYOUTS:
        raise InvalidInputError(f"embedding_layout must be one of {', '.join(LAYOUTS)}, got {embedding_layout!r}")
    if embedding_layout == "per_window" and not batch_independent(model):
        # Triton batches windows of different requests into one plan call; a backbone whose
        # windows share batch statistics would give each window its neighbours' results.
        raise InvalidInputError("this model's windows depend on the other windows of their batch "
                                "(batch-statistics norm); the per-window graph batches windows of "
                                "different requests, so serve this model on CPU (universal_seg)")
    model_e = int(getattr(model, "embed_dim", embed_dim or 0))
    e = int(embed_dim) if embed_dim is not None else model_e
    if e <= 0 or (model_e and e != model_e):
        raise InvalidInputError(f"embed_dim {embed_dim} does not match the model's {model_e}")
    n = WINDOW ** 3
    if heads == "chunked" and (chunk_voxels <= 0 or n % chunk_voxels):
        raise InvalidInputError(f"chunk_voxels must divide {n} (96³), got {chunk_voxels}")
    if not 13 <= int(opset) <= 21:
        raise InvalidInputError(f"opset must be in 13..21, got {opset}")

    was_training = model.training
    model.eval()
    try:
        graph = _export_trunk(model, e, int(opset), embedding_layout)
        _append_heads(graph, heads, chunk_voxels)
        w3 = f"{WINDOW},{WINDOW},{WINDOW}"
        table = f"(K,{e})" if embedding_layout == "shared" else f"(B,K,{e}), one table per window"
        graph.doc_string = (f"radmesh Universal Model: image (B,1,{w3}) float32 in [0,1], "
                            f"class_embedding {table} float32 -> logits (B,K,{w3}); heads={heads}")
        _set_meta(graph, {**{str(k): str(v) for k, v in (metadata or {}).items()},
                          "radmesh.format": FORMAT, "radmesh.embed_dim": str(e), "radmesh.window": str(WINDOW),
                          "radmesh.heads": heads, "radmesh.embedding_layout": embedding_layout,
                          "radmesh.frame": str(getattr(model, "frame", NATIVE)),
                          "radmesh.max_batch_size": "0" if batch_independent(model) else "1"})
        onnx.checker.check_model(graph, full_check=True)
        out = Path(path)
        with atomic_output(out, suffix=".onnx") as tmp:
            onnx.save(graph, str(tmp))
            diff = None
            shapes: tuple[tuple[int, int], ...] = ()
            if verify:
                shapes = tuple((int(b), int(k)) for b, k in verify_shapes)
                diff = verify_onnx(tmp, model, shapes=shapes, seed=seed)
                if not diff <= tolerance:
                    raise ExportVerificationError(
                        f"exported graph differs from the PyTorch model by {diff:.3g} in logits "
                        f"(tolerance {tolerance:g}); nothing written to {out}")
                _set_meta(graph, {"radmesh.max_abs_diff": f"{diff:.3e}"})
                onnx.save(graph, str(tmp))
    finally:
        model.train(was_training)
    log.info("exported %s (heads=%s, layout=%s, opset %d, max |Δlogit| %s)", out, heads, embedding_layout,
             opset, diff)
    return ExportResult(out, int(opset), heads, e, diff, shapes)


def export_for_tensorrt(out: str | os.PathLike, weights: str | os.PathLike | None = None,
                        **kwargs) -> ExportResult:
    """The graph ``scripts/build_trt_plan.sh`` turns into Triton's ``universal_seg_trt`` plan.

    ``weights`` (default: the shipped reference weights) exported with per-window class
    tables (``class_embedding`` (B, K, E), see the module docstring) and the ``matmul`` heads
    (TensorRT fuses them; the ``chunked`` Loop is tuned for ONNX Runtime on CPU), verified
    against PyTorch like every export. ``kwargs`` go to :func:`export_onnx`.
    """
    from radmesh.model.runtime import load

    model, meta = load(weights)
    kwargs.setdefault("heads", "matmul")
    return export_onnx(model, out, embedding_layout="per_window",
                       metadata={"radmesh.model_version": str(meta.get("model_version", "")),
                                 "radmesh.encoder_id": str(meta.get("encoder_id", "")),
                                 "radmesh.classes": ",".join(str(c) for c in meta["classes"])}, **kwargs)


def verify_onnx(path: str | os.PathLike, model: nn.Module, shapes: Sequence[tuple[int, int]] = VERIFY_SHAPES,
                seed: int = 0, threads: int | None = None) -> float:
    """Max |logit difference| between the ONNX graph (ONNX Runtime, CPU) and ``model`` over
    seeded random inputs of each (B, K) in ``shapes``.

    A per-window graph (``class_embedding`` (B, K, E)) gets a different random table for
    every window and is compared with PyTorch run on each window and its own table."""
    per_window = embedding_layout_of(path) == "per_window"
    if per_window:
        # OnnxRunner takes the CPU graph's shared (K, E) table only: run the session directly.
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads) if threads else 0
        so.log_severity_level = 3
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        e = int(onnx_metadata(path).get("radmesh.embed_dim", "0")) or int(getattr(model, "embed_dim"))

        def onnx_logits(image: np.ndarray, emb: np.ndarray) -> np.ndarray:
            return session.run([OUTPUT_LOGITS], {INPUT_IMAGE: image, INPUT_EMBEDDING: emb})[0]

        def torch_logits(image: torch.Tensor, emb: torch.Tensor) -> np.ndarray:
            return np.concatenate([model(image[i:i + 1], emb[i]).numpy() for i in range(image.shape[0])])
    else:
        from radmesh.model.onnx_runner import OnnxRunner

        onnx_logits = OnnxRunner(path, threads=threads)
        e = onnx_logits.embed_dim

        def torch_logits(image: torch.Tensor, emb: torch.Tensor) -> np.ndarray:
            return model(image, emb).numpy()

    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    was_training = model.training
    model.eval()
    try:
        for b, k in shapes:
            image = torch.rand(b, 1, WINDOW, WINDOW, WINDOW, generator=gen)
            emb = torch.randn(*((b, k, e) if per_window else (k, e)), generator=gen)
            emb = emb / emb.norm(dim=-1, keepdim=True)
            with torch.inference_mode():
                ref = torch_logits(image, emb)
            got = onnx_logits(image.numpy(), emb.numpy())
            if got.shape != ref.shape:
                raise ExportVerificationError(f"ONNX logits have shape {got.shape}, PyTorch {ref.shape} (B={b}, K={k})")
            worst = max(worst, float(np.max(np.abs(got - ref))))
    finally:
        model.train(was_training)
    return worst


def embedding_layout_of(path: str | os.PathLike) -> str:
    """``"shared"`` or ``"per_window"``: how the graph at ``path`` takes its class table (by the input's rank)."""
    import onnx

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as ex:  # noqa: BLE001
        raise FailedPreconditionError(f"{path}: not a readable ONNX model ({type(ex).__name__})") from ex
    for i in m.graph.input:
        if i.name == INPUT_EMBEDDING:
            return "per_window" if len(i.type.tensor_type.shape.dim) == 3 else "shared"
    raise FailedPreconditionError(f"{path}: no {INPUT_EMBEDDING} input")


# ---- graph construction ----------------------------------------------------------------

def _export_trunk(model: nn.Module, embed_dim: int, opset: int, embedding_layout: str = "shared"):
    """The traced trunk as an ONNX ModelProto with outputs ``heads/params`` and ``heads/feature``."""
    import onnx

    trunk = _Trunk(model).eval()
    image = torch.rand(2, 1, WINDOW, WINDOW, WINDOW)
    if embedding_layout == "per_window":
        emb = torch.randn(2, 3, embed_dim)
        emb_axes = {0: "batch", 1: "num_classes"}
    else:
        emb = torch.randn(3, embed_dim)
        emb_axes = {0: "num_classes"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            trunk, (image, emb), buf, input_names=[INPUT_IMAGE, INPUT_EMBEDDING],
            output_names=["heads/params", "heads/feature"], opset_version=opset, dynamo=False,
            dynamic_axes={INPUT_IMAGE: {0: "batch"}, INPUT_EMBEDDING: emb_axes,
                          "heads/params": {0: "batch", 1: "num_classes"}, "heads/feature": {0: "batch"}},
            do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def _append_heads(model_proto, heads: str, chunk_voxels: int) -> None:
    """Append the dynamic heads to the trunk graph: (params, feature) → ``logits`` (B, K, 96, 96, 96)."""
    from onnx import TensorProto, helper, numpy_helper

    g = model_proto.graph
    p = "heads/"

    def const(name: str, values, dtype=np.int64) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), p + name))
        return p + name

    def node(op: str, inputs: list[str], outputs: list[str], **attrs):
        return helper.make_node(op, inputs, outputs, name=p + outputs[0].removeprefix(p), **attrs)

    c = HEAD_CHANNELS
    split = const("split", [*WEIGHT_NUMS, *BIAS_NUMS])
    nodes = [
        node("Split", [p + "params", split], [p + n for n in ("w1", "w2", "w3", "b1", "b2", "b3")], axis=2),
        node("Shape", [p + "params"], [p + "shape_params"]),
        node("Slice", [p + "shape_params", const("zero", [0]), const("two", [2])], [p + "bk"]),   # [B, K]
    ]

    def bk_shape(name: str, tail: list[int]) -> str:
        nodes.append(node("Concat", [p + "bk", const(name + "_tail", tail)], [p + name], axis=0))
        return p + name

    s_w2, s_b2 = bk_shape("shape_w2", [c, c]), bk_shape("shape_b2", [c, 1])
    s_w3, s_b3 = bk_shape("shape_w3", [1, c]), bk_shape("shape_b3", [1, 1])
    s_hidden = bk_shape("shape_hidden", [c, -1])
    s_out = bk_shape("shape_logits", [WINDOW, WINDOW, WINDOW])
    nodes += [
        node("Reshape", [p + "w1", const("shape_w1", [0, -1, c])], [p + "W1"]),     # (B, K·8, 8)
        node("Reshape", [p + "b1", const("shape_b1", [0, -1, 1])], [p + "B1"]),     # (B, K·8, 1)
        node("Reshape", [p + "w2", s_w2], [p + "W2"]),                              # (B, K, 8, 8)
        node("Reshape", [p + "b2", s_b2], [p + "B2"]),                              # (B, K, 8, 1)
        node("Reshape", [p + "w3", s_w3], [p + "W3"]),                              # (B, K, 1, 8)
        node("Reshape", [p + "b3", s_b3], [p + "B3"]),                              # (B, K, 1, 1)
    ]

    def layers(x: str, tag: str) -> tuple[list, str]:
        """The three head layers on x (B, 8, n) → (B, K, 1, n)."""
        t = p + tag
        return [
            node("MatMul", [p + "W1", x], [t + "h1_mm"]), node("Add", [t + "h1_mm", p + "B1"], [t + "h1_b"]),
            node("Relu", [t + "h1_b"], [t + "h1"]),                                      # (B, K·8, n)
            node("Reshape", [t + "h1", s_hidden], [t + "h1_k"]),                         # (B, K, 8, n)
            node("MatMul", [p + "W2", t + "h1_k"], [t + "h2_mm"]), node("Add", [t + "h2_mm", p + "B2"], [t + "h2_b"]),
            node("Relu", [t + "h2_b"], [t + "h2"]),                                      # (B, K, 8, n)
            node("MatMul", [p + "W3", t + "h2"], [t + "o_mm"]), node("Add", [t + "o_mm", p + "B3"], [t + "o"]),
        ], t + "o"

    if heads == "matmul":
        body, out = layers(p + "feature", "full/")
        nodes += body
        nodes.append(helper.make_node("Reshape", [out, s_out], [OUTPUT_LOGITS], name=p + "logits"))
    else:
        n = chunk_voxels
        step = const("chunk", [n])
        axis2 = const("axis2", [2])
        body_nodes = [
            node("Unsqueeze", ["i", p + "zero"], [p + "loop/i1"]),
            node("Mul", [p + "loop/i1", step], [p + "loop/start"]),
            node("Add", [p + "loop/start", step], [p + "loop/stop"]),
            node("Slice", [p + "feature", p + "loop/start", p + "loop/stop", axis2], [p + "loop/x"]),  # (B, 8, n)
        ]
        more, out = layers(p + "loop/x", "loop/")
        body_nodes += more
        body_nodes.append(node("Identity", ["cond_in"], ["cond_out"]))
        body = helper.make_graph(
            body_nodes, "heads_chunk",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", "num_classes", 1, n])])
        trips = const("trips", WINDOW ** 3 // n)
        nodes += [
            helper.make_node("Loop", [trips, ""], [p + "slabs"], body=body, name=p + "loop"),  # (T, B, K, 1, n)
            node("Transpose", [p + "slabs"], [p + "slabs_t"], perm=[1, 2, 3, 0, 4]),          # (B, K, 1, T, n)
            helper.make_node("Reshape", [p + "slabs_t", s_out], [OUTPUT_LOGITS], name=p + "logits"),
        ]
    g.node.extend(nodes)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(OUTPUT_LOGITS, TensorProto.FLOAT,
                                                  ["batch", "num_classes", WINDOW, WINDOW, WINDOW]))


def _set_meta(model_proto, values: dict[str, str]) -> None:
    existing = {p.key: p for p in model_proto.metadata_props}
    for k, v in values.items():
        if k in existing:
            existing[k].value = v
        else:
            entry = model_proto.metadata_props.add()
            entry.key, entry.value = k, v


def onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (radmesh.* keys among them)."""
    import onnx

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as ex:  # noqa: BLE001
        raise FailedPreconditionError(f"{path}: not a readable ONNX model ({type(ex).__name__})") from ex
    return {p.key: p.value for p in m.metadata_props}
