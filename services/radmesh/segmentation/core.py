"""The segmentation service's core: a CT and a request in, a label map out (no gRPC here).

``Segmenter(runner, text, weights).segment(ct, options, progress, end_monotonic)`` →
:class:`SegmentOutcome`:

1. targets: ``options.targets`` (vocabulary indices), or ``options.prompt`` resolved by
   the text service's Parse (refused when it names nothing in the vocabulary); every
   target must be a class the model is validated on (FailedPreconditionError naming
   it, :func:`radmesh.model.pipeline.check_classes`) — checked before any heavy work;
2. class embeddings: the text service's Encode of the model's validated classes with
   the encoder the weights record; the table must come from the same encoder
   (``encoder_id``) and hash to the weights' ``table_sha256`` (or agree with the table
   the weights carry within ``TABLE_TOLERANCE``: batch composition moves MiniLM's rows
   by ~1e-7), else FailedPreconditionError naming both. A verified table is cached per (encoder,
   classes), so Encode runs once per process;
3. the pipeline (:func:`radmesh.model.pipeline.segment`) with the runner: Triton
   (:class:`~radmesh.segmentation.triton_runner.TritonRunner`) or, when configured,
   in-process ONNX Runtime (:class:`~radmesh.model.onnx_runner.OnnxRunner`);
4. the label map (uint8 vocabulary indices on the input CT's grid), per-class voxel
   counts and volumes (mL), the model's identity and the elapsed seconds.

``progress(event)`` receives :class:`ProgressEvent` in stage order — ``parsing`` (prompt
only), ``encoding``, ``preprocessing``, ``inference`` (windows done / total, from 0 to
total), ``postprocessing``. A callback that raises aborts the segmentation (that is how
a server cancels work for a client that went away). ``end_monotonic`` bounds the whole
call (``time.monotonic()`` seconds): it is checked between stages and after every
window batch, and Triton calls carry it as their timeout.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.volume import Volume
from radmesh.model.calibration import UNCALIBRATED, Calibration
from radmesh.segmentation.triton_runner import DEFAULT_MODEL, DeadlineExceededError, TritonRunner, is_loopback

log = logging.getLogger(__name__)

DEFAULT_TRITON_URL = "127.0.0.1:8001"  # radmesh serve triton's gRPC port
DEFAULT_TEXT_URL = "127.0.0.1:50052"  # radmesh serve text
MAX_OVERLAP = 0.9  # SegmentOptions.overlap is a fraction in [0, 0.9]
# Largest |Δ| between the text service's class table and the weights' own that still counts
# as the same table: float32 rounding from batch composition is ~1e-7; another encoder or
# prompt template differs by > 1e-2.
TABLE_TOLERANCE = 1e-5
SHARED_MEMORY_MODES = ("auto", "on", "off")
STAGES = ("parsing", "encoding", "preprocessing", "inference", "postprocessing")


@dataclass(frozen=True)
class SegmentOptions:
    """What to segment and how (the proto's SegmentOptions, plain).

    ``targets``: vocabulary indices; when empty, ``prompt`` is resolved by the text
    service. ``fast``: 3 mm model spacing instead of 1.5 mm. ``overlap``: sliding-window
    overlap, fraction of a window in [0, 0.9]; None = the pipeline's default (0.5).
    ``min_lesion_mm3``: smaller lesion components are dropped, for every class; None = each
    class's default (mm³: 20 for lung nodules, 100 for other lesions,
    :func:`radmesh.model.postprocess.default_min_lesion_mm3`). 0 means 0 for both, as in-process.
    """

    targets: tuple[int, ...] = ()
    prompt: str = ""
    fast: bool = False
    overlap: float | None = None
    min_lesion_mm3: float | None = None

    def validate(self) -> SegmentOptions:
        """Range checks (InvalidInputError naming the field); returns self."""
        if not self.targets and not (self.prompt or "").strip():
            raise InvalidInputError("give targets (class indices) or a prompt")
        for c in self.targets:
            vocab.get(int(c))  # UnknownClassError (INVALID_ARGUMENT) for indices outside 1..32
        if self.overlap is not None and not (math.isfinite(self.overlap) and 0.0 <= self.overlap <= MAX_OVERLAP):
            raise InvalidInputError(f"overlap must be in [0, {MAX_OVERLAP}], got {self.overlap}")
        if self.min_lesion_mm3 is not None and not (math.isfinite(self.min_lesion_mm3) and self.min_lesion_mm3 >= 0):
            raise InvalidInputError(f"min_lesion_mm3 must be a number ≥ 0, got {self.min_lesion_mm3}")
        return self


@dataclass(frozen=True)
class ProgressEvent:
    """A stage started or advanced. ``stage`` is one of :data:`STAGES`; ``done``/``total``
    count windows during ``inference`` (0/0 elsewhere); ``message`` holds no patient data."""

    stage: str
    done: int = 0
    total: int = 0
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the loaded model (the proto's ModelInfo plus what the service checks)."""

    model_id: str  # "radmesh-unet-phantom", from the weights file name
    model_version: str  # "radmesh-unet-phantom-7"
    embedding_backend: str  # "minilm" | "clip" | "table"
    class_table_sha256: str  # hex SHA-256 of the class table the model was trained with
    encoder_id: str  # the text encoder that made that table
    validated_classes: tuple[int, ...]  # vocabulary indices the model is validated on
    runtime: str  # where windows run, e.g. "triton universal_seg at 127.0.0.1:8001 (shared memory)"
    calibration: Calibration = UNCALIBRATED  # the weights' post-processing values (radmesh.model.calibration)


@dataclass(frozen=True)
class SegmentOutcome:
    """A finished segmentation.

    ``labels``: uint8 vocabulary indices on the input CT's grid; ``class_indices``: the
    requested classes in request order, then ``host_classes`` (host organs of requested
    lesions, added by the pipeline); ``voxel_counts`` / ``volumes_ml``: per class on that
    grid (0 when not found); ``elapsed_s``: seconds in :meth:`Segmenter.segment`;
    ``timings_s``: the pipeline's stage seconds; ``windows``: 96³ windows run;
    ``spacing_mm``: model-space spacing; ``intent``: the parsed prompt (``Intent.to_dict()``
    form) or None for explicit targets.
    """

    labels: Volume
    class_indices: tuple[int, ...]
    voxel_counts: dict[int, int]
    volumes_ml: dict[int, float]
    model: ModelInfo
    elapsed_s: float
    timings_s: dict[str, float]
    windows: int
    spacing_mm: float
    intent: dict[str, Any] | None = None
    host_classes: tuple[int, ...] = ()


class TextService(Protocol):
    """The two text-service calls the core needs (the server plugs in gRPC clients)."""

    def parse(self, prompt: str, timeout_s: float) -> dict[str, Any]:
        """``Intent.to_dict()`` of ``prompt``."""
        ...

    def encode_classes(self, class_indices: Sequence[int], backend: str,
                       timeout_s: float) -> tuple[np.ndarray, str, str]:
        """((K, E) float32 embeddings in request order, backend, encoder_id)."""
        ...


def targets_from_intent(prompt: str, intent: dict[str, Any]) -> list[int]:
    """Distinct target class indices of a parsed prompt; InvalidInputError when it names none."""
    if intent.get("unsupported") or not intent.get("targets"):
        near = ", ".join(s["name"] for s in intent.get("suggestions", []))
        what = intent.get("unsupported_phrase") or "no target"
        raise InvalidInputError(f"nothing to segment in {prompt!r}: {what} is not in the vocabulary"
                                + (f" (nearest: {near})" if near else ""))
    out: list[int] = []
    for t in intent["targets"]:
        if int(t["class_index"]) not in out:
            out.append(int(t["class_index"]))
    return out


def make_runner(*, embedded: bool, weights: str | os.PathLike | None = None, triton_url: str = DEFAULT_TRITON_URL,
                triton_model: str = DEFAULT_MODEL, shared_memory: str = "auto",
                timeout_s: float = 600.0) -> tuple[Any, str]:
    """(runner, description): Triton by default, in-process ONNX Runtime only when ``embedded``.

    ``shared_memory``: "on", "off", or "auto" (on when ``triton_url``'s host is loopback,
    i.e. Triton runs on this host; turned off with a warning if Triton then cannot open the
    regions). Never falls back from Triton to in-process.
    """
    if shared_memory not in SHARED_MEMORY_MODES:
        raise InvalidInputError(f"--shared-memory must be one of {', '.join(SHARED_MEMORY_MODES)}, "
                                f"got {shared_memory!r}")
    if embedded:
        from radmesh.model.onnx_runner import OnnxRunner
        from radmesh.model.runtime import onnx_for

        path, _ = onnx_for(weights)
        return OnnxRunner(path), "onnxruntime (embedded)"
    use_shm = shared_memory == "on" or (shared_memory == "auto" and is_loopback(triton_url))
    runner = TritonRunner(triton_url, triton_model, shared_memory=use_shm, timeout_s=timeout_s,
                          shared_memory_required=shared_memory == "on")
    return runner, f"triton {triton_model} at {runner.url} ({'shared memory' if use_shm else 'gRPC tensors'})"


def model_info_from_meta(meta: dict[str, Any], runtime: str) -> ModelInfo:
    encoder_id = str(meta.get("encoder_id", ""))
    return ModelInfo(
        model_id=Path(str(meta.get("path", "model"))).stem.replace("_", "-"),
        model_version=str(meta.get("model_version", "")),
        embedding_backend=encoder_id.split(":", 1)[0],
        class_table_sha256=str(meta.get("table_sha256", "")),
        encoder_id=encoder_id,
        validated_classes=tuple(int(c) for c in meta["classes"]),
        runtime=runtime,
        calibration=meta.get("calibration", UNCALIBRATED),
    )


@dataclass
class _TableCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    tables: dict[tuple[str, tuple[int, ...]], dict[int, np.ndarray]] = field(default_factory=dict)


class Segmenter:
    """The model (weights' meta), a runner and a text service, ready to segment.

    ``runner``: a pipeline runner (see :func:`make_runner`); ``text``: a
    :class:`TextService`; ``weights``: the weights file whose meta (validated classes,
    encoder, class-table hash, version) describes the model the runner serves (default:
    the shipped weights). ``runtime``: a description for logs and model info.
    """

    def __init__(self, runner: Any, text: TextService, weights: str | os.PathLike | None = None,
                 runtime: str = ""):
        from radmesh.model.runtime import load

        _, meta = load(weights)
        self.meta = meta
        self.runner = runner
        self.text = text
        self.model = model_info_from_meta(meta, runtime or type(runner).__name__)
        self._cache = _TableCache()

    # ---- steps ---------------------------------------------------------------------------
    def check_targets(self, options: SegmentOptions) -> tuple[int, ...]:
        """Explicit targets as validated indices (FailedPreconditionError for others); () for a prompt."""
        from radmesh.model.pipeline import check_classes

        options.validate()
        return check_classes(options.targets, self.model.validated_classes) if options.targets else ()

    def class_table(self, timeout_s: float) -> dict[int, np.ndarray]:
        """{validated class: (E,) float32} from the text service, verified against the weights."""
        from radmesh.text.encoders import table_sha256

        classes = self.model.validated_classes
        key = (self.model.encoder_id, classes)
        with self._cache.lock:
            cached = self._cache.tables.get(key)
        if cached is not None:
            return cached
        table, backend, encoder_id = self.text.encode_classes(classes, self.model.embedding_backend, timeout_s)
        if encoder_id != self.model.encoder_id:
            raise FailedPreconditionError(
                f"the text service encodes with {encoder_id} ({backend}) but model {self.model.model_version} was "
                f"trained with {self.model.encoder_id}: its class embeddings cannot be used")
        table = np.ascontiguousarray(table, dtype=np.float32)
        if table.shape[0] != len(classes):
            raise FailedPreconditionError(f"the text service returned {table.shape[0]} embeddings for "
                                          f"{len(classes)} classes")
        sha = table_sha256(table)
        if sha != self.model.class_table_sha256:
            # The same encoder may return a row a few ulps apart depending on what it batched
            # it with (MiniLM pads a batch to its longest prompt): compare with the table the
            # weights carry, within TABLE_TOLERANCE, before refusing.
            trained = np.asarray(self.meta.get("class_embedding", np.zeros((0, 0))), dtype=np.float32)
            diff = float(np.max(np.abs(trained - table))) if trained.shape == table.shape else math.inf
            if not diff <= TABLE_TOLERANCE:
                raise FailedPreconditionError(
                    f"the text service's class table (sha256 {sha}) is not the one model {self.model.model_version} "
                    f"was trained with (sha256 {self.model.class_table_sha256}, max difference {diff:.3g}), "
                    f"both from {encoder_id}")
        rows = {c: table[i] for i, c in enumerate(classes)}
        with self._cache.lock:
            self._cache.tables[key] = rows
        return rows

    # ---- the whole request ----------------------------------------------------------------
    def segment(self, ct: Volume, options: SegmentOptions, progress: ProgressCallback | None = None,
                end_monotonic: float | None = None) -> SegmentOutcome:
        """Segment ``ct`` (HU, any grid, (z, y, x)) as ``options`` asks; see the module docstring."""
        from radmesh.model.pipeline import DEFAULT_OVERLAP, check_classes, segment
        from radmesh.model.preprocess import FAST_SPACING_MM, MODEL_SPACING_MM

        t0 = time.perf_counter()
        end = end_monotonic

        def remaining(stage: str) -> float:
            if end is None:
                return 600.0
            left = end - time.monotonic()
            if left <= 0:
                raise DeadlineExceededError(f"deadline exceeded during {stage}")
            return left

        def emit(event: ProgressEvent) -> None:
            remaining(event.stage)
            if progress is not None:
                progress(event)

        if not isinstance(ct, Volume):
            raise InvalidInputError(f"ct must be a Volume, got {type(ct).__name__}")
        classes = self.check_targets(options)
        intent = None
        if not classes:
            emit(ProgressEvent("parsing", message="resolving the prompt with the text service"))
            intent = self.text.parse(options.prompt, min(30.0, remaining("parsing")))
            classes = check_classes(targets_from_intent(options.prompt, intent), self.model.validated_classes)
        names = ", ".join(vocab.get(c).name for c in classes)
        emit(ProgressEvent("encoding", message=f"class embeddings of {names}"))
        table = self.class_table(min(60.0, remaining("encoding")))

        runner = self.runner
        if end is not None and hasattr(runner, "with_deadline"):
            runner = runner.with_deadline(end)
        if hasattr(runner, "check_ready"):
            runner.check_ready()  # Triton down → UNAVAILABLE now, not after preprocessing
        emit(ProgressEvent("preprocessing", message="orientation, resampling, HU window"))

        inference_done = [False]

        def on_windows(done: int, total: int) -> None:
            emit(ProgressEvent("inference", done, total, f"{done}/{total} windows"))
            if done >= total and not inference_done[0]:
                inference_done[0] = True
                emit(ProgressEvent("postprocessing", message="components, host constraints, resampling back"))

        spacing = FAST_SPACING_MM if options.fast else MODEL_SPACING_MM
        result = segment(ct, classes, runner, table, spacing_mm=spacing,
                         overlap=DEFAULT_OVERLAP if options.overlap is None else options.overlap,
                         min_lesion_mm3=options.min_lesion_mm3,
                         progress=on_windows, validated_classes=self.model.validated_classes,
                         calibration=self.model.calibration)
        remaining("postprocessing")
        return SegmentOutcome(
            labels=result.labels, class_indices=result.class_indices, voxel_counts=dict(result.voxel_counts),
            volumes_ml=dict(result.volumes_ml), model=self.model, elapsed_s=time.perf_counter() - t0,
            timings_s=dict(result.timings_s), windows=result.windows, spacing_mm=result.spacing_mm, intent=intent,
            host_classes=tuple(result.host_classes))

    def close(self) -> None:
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()
