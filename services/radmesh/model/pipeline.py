"""Segmenting a CT with the Universal Model: the segmentation service's pure core.

``segment(ct, class_indices, runner, class_table)`` → :class:`SegmentationResult`:

1. model space (:func:`radmesh.model.preprocess.to_model_space`): the canonical
   axis-aligned LPS grid at ``spacing_mm`` (1.5 mm; ``--fast``: 3.0 mm), HU window
   [-175, 250] → [0, 1];
2. crop to the body (:func:`~radmesh.model.preprocess.body_crop`): the air around
   the patient is not segmented;
3. sliding windows of 96³ over the crop with MONAI's ``sliding_window_inference``
   (``overlap`` 0.5, Gaussian blending by default, ``sw_batch_size`` windows per runner
   call, zero padding where the crop is smaller than a window); each call is
   ``runner(windows (B, 1, 96, 96, 96) float32, class_embedding (K, E) float32) →
   logits (B, K, 96, 96, 96)``, so in-process PyTorch (:class:`TorchRunner`), in-process
   ONNX Runtime (:class:`radmesh.model.onnx_runner.OnnxRunner`) and Triton share this code;
   blended logits → sigmoid;
4. post-processing (:mod:`radmesh.model.postprocess`: threshold, lungs split, largest
   component for organs, vessel specks, lesions inside their dilated host, small
   lesions, overlaps) → uint8 label map of vocabulary indices;
5. pasted back into the uncropped canonical grid and resampled to the input CT's grid
   (nearest neighbour, :func:`~radmesh.model.preprocess.from_model_space`).

``progress(done, total)`` is called with the number of windows run: (0, total) first,
then after every runner call, (total, total) last. An exception raised by the callback
(or the runner) aborts the segmentation and propagates: that is how a caller cancels.

Class embeddings come from a *class table*: a mapping {vocabulary index: (E,) vector}
(e.g. :func:`class_table_from_meta` of a weights file's meta), or a (32, E) array
whose row i is class i + 1 (the vocabulary-wide convention of the text encoders'
tables and the published ``organ_embedding``). A loaded model declares the classes
it was validated on; :func:`check_classes` turns a request for another into a
FailedPreconditionError naming it (never an empty mask).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.volume import Geometry, Volume
from radmesh.model.calibration import UNCALIBRATED, Calibration
from radmesh.model.postprocess import absorb_lesion_fragments, postprocess
from radmesh.model.preprocess import FAST_SPACING_MM, MODEL_SPACING_MM, body_crop, body_on_grid, from_model_space, \
    to_model_space

log = logging.getLogger(__name__)

WINDOW = 96
DEFAULT_OVERLAP = 0.5
DEFAULT_SW_BATCH_SIZE = 2
BLEND_MODES = ("gaussian", "constant")

ProgressCallback = Callable[[int, int], None]


class Runner(Protocol):
    """Runs the model on a batch of windows: the seam between the pipeline and a backend.

    Optional attributes :func:`segment` honours when present: ``embed_dim`` (E the model
    takes; a class table of another width is refused before any window runs) and
    ``max_batch_size`` (windows per call at most; None = any).
    """

    def __call__(self, windows: np.ndarray, class_embedding: np.ndarray) -> np.ndarray:
        """(B, 1, 96, 96, 96) float32 in [0, 1], (K, E) float32 → (B, K, 96, 96, 96) float32 logits."""
        ...


def batch_independent(model: torch.nn.Module) -> bool:
    """Whether a window's logits do not depend on the other windows of its batch.

    False for the published U-Net backbone, whose batch norm uses the statistics of the
    batch it is given in eval mode too (``BatchStatNorm3d``): its windows must be run one
    at a time to give the published results.
    """
    for m in model.modules():
        if type(m).__name__ == "BatchStatNorm3d":
            return False
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats):
            return False
    return True


class TorchRunner:
    """The PyTorch model in eager mode, in-process (inference mode, CPU).

    ``threads`` sets ``torch.set_num_threads`` (process-wide) when given. ``max_batch_size``
    is 1 for a model whose windows are not batch-independent (:func:`batch_independent`),
    else None (any); :func:`segment` never sends a runner more windows than that.
    """

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model.eval()
        self.embed_dim = getattr(model, "embed_dim", None)
        self.max_batch_size = None if batch_independent(model) else 1
        if threads is not None:
            torch.set_num_threads(int(threads))

    def __call__(self, windows: np.ndarray, class_embedding: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        e = torch.from_numpy(np.ascontiguousarray(class_embedding, dtype=np.float32))
        with torch.inference_mode():
            return self.model(x, e).numpy()


@dataclass(frozen=True)
class SegmentationResult:
    """What :func:`segment` returns.

    ``labels``: uint8 vocabulary indices on the input CT's grid; ``voxel_counts`` and
    ``volumes_ml``: per requested class, on that grid (0 for a class not found);
    ``timings_s``: preprocess, inference, postprocess, resample, total; ``windows``: runner
    windows run; ``model_grid``: the canonical grid; ``body_box_zyx``: the crop on it as
    ((z0, z1), (y0, y1), (x0, x1)).
    """

    labels: Volume
    class_indices: tuple[int, ...]
    voxel_counts: dict[int, int]
    volumes_ml: dict[int, float]
    timings_s: dict[str, float]
    windows: int
    spacing_mm: float
    model_grid: Geometry
    body_box_zyx: tuple[tuple[int, int], ...]
    host_classes: tuple[int, ...] = ()

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per class name, voxels and volume_ml, plus timings."""
        return {
            "classes": [{"class_index": c, "name": vocab.get(c).name, "voxels": self.voxel_counts[c],
                         "volume_ml": round(self.volumes_ml[c], 3), "host_only": c in self.host_classes}
                        for c in self.class_indices],
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "windows": self.windows,
            "spacing_mm": self.spacing_mm,
        }


# ---- classes and embeddings -------------------------------------------------------------

def with_hosts(classes: Sequence[int], validated: Sequence[int]) -> tuple[int, ...]:
    """``classes`` followed by the host organs of its lesion classes that were not requested
    (only those in ``validated``; both sides of a left/right host pair).

    A lesion asked for alone would otherwise be post-processed without its organ: rule 5
    of :mod:`radmesh.model.postprocess` keeps lesions only inside their host, and the
    measurement and report place a lesion (pancreatic tail, liver segment) and compare its
    attenuation with the organ it sits in, both from the host's label.
    """
    allowed = {int(v) for v in validated}
    out = [int(c) for c in classes]
    for c in list(out):
        for h in vocab.get(c).host:
            if h in allowed and h not in out:
                out.append(h)
    return tuple(out)


def check_classes(requested: Sequence[int], validated: Sequence[int]) -> tuple[int, ...]:
    """``requested`` as distinct vocabulary indices (request order), each validated for the model.

    Unknown indices → UnknownClassError (InvalidInputError); a vocabulary class the
    model was not validated on → FailedPreconditionError naming it and the classes it was.
    """
    out: list[int] = []
    for c in requested:
        idx = vocab.get(c).index
        if idx not in out:
            out.append(idx)
    if not out:
        raise InvalidInputError("no classes requested")
    allowed = {int(v) for v in validated}
    bad = [c for c in out if c not in allowed]
    if bad:
        names = ", ".join(f"{vocab.get(c).name} ({c})" for c in bad)
        known = ", ".join(vocab.get(c).name for c in sorted(allowed))
        raise FailedPreconditionError(
            f"the model was not validated on {names}; it segments only: {known}")
    return tuple(out)


def class_table_from_meta(meta: Mapping[str, Any]) -> dict[int, np.ndarray]:
    """{class index: (E,) float32} from a weights file's meta (``classes``, ``class_embedding``)."""
    try:
        classes = [int(c) for c in meta["classes"]]
        table = np.asarray(meta["class_embedding"], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as ex:
        raise FailedPreconditionError(f"model meta lacks a usable class table ({ex})") from None
    if table.ndim != 2 or table.shape[0] != len(classes):
        raise FailedPreconditionError(f"model class table has shape {table.shape} for {len(classes)} classes")
    return {c: table[i] for i, c in enumerate(classes)}


def class_embeddings(class_indices: Sequence[int], class_table: Mapping[int, np.ndarray] | np.ndarray) -> np.ndarray:
    """(K, E) float32 rows of ``class_table`` for ``class_indices``, in that order."""
    rows = []
    if isinstance(class_table, Mapping):
        for c in class_indices:
            if int(c) not in class_table:
                raise FailedPreconditionError(
                    f"the class table has no embedding for {vocab.get(c).name} ({int(c)})")
            rows.append(np.asarray(class_table[int(c)], dtype=np.float32).reshape(-1))
    else:
        table = np.asarray(class_table, dtype=np.float32)
        if table.ndim != 2 or table.shape[0] != vocab.NUM_CLASSES:
            raise InvalidInputError(f"a class table array must be ({vocab.NUM_CLASSES}, E) (row i = class i + 1), "
                                    f"got shape {table.shape}; pass a {{class index: vector}} mapping otherwise")
        rows = [table[vocab.get(c).index - 1] for c in class_indices]
    if len({r.shape for r in rows}) != 1:
        raise InvalidInputError("class table rows have different lengths")
    out = np.stack(rows).astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise InvalidInputError("class table holds non-finite values")
    return np.ascontiguousarray(out)


# ---- windows ------------------------------------------------------------------------------

def window_count(shape_zyx: Sequence[int], overlap: float, roi: int = WINDOW) -> int:
    """How many windows MONAI's sliding_window_inference runs over ``shape_zyx`` (after padding to roi)."""
    n = 1
    for s in shape_zyx:
        s = max(int(s), roi)
        step = roi if s == roi else max(1, int(roi * (1 - overlap)))
        n *= 1 if s == roi else -(-(s - roi) // step) + 1
    return n


def sliding_window_probabilities(image: np.ndarray, embedding: np.ndarray, runner: Runner, *,
                                 overlap: float = DEFAULT_OVERLAP, sw_batch_size: int = DEFAULT_SW_BATCH_SIZE,
                                 mode: str = "gaussian", progress: ProgressCallback | None = None) -> np.ndarray:
    """(Z, Y, X) float32 model-space image → (K, Z, Y, X) float32 sigmoid probabilities
    (logits blended over 96³ windows, then the sigmoid)."""
    from monai.inferers import sliding_window_inference

    total = window_count(image.shape, overlap)
    done = 0

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        logits = runner(windows.numpy(), embedding)
        if logits.shape != (windows.shape[0], embedding.shape[0], WINDOW, WINDOW, WINDOW):
            raise FailedPreconditionError(f"the model runner returned logits of shape {tuple(logits.shape)} for "
                                          f"{windows.shape[0]} windows and {embedding.shape[0]} classes")
        done += windows.shape[0]
        if progress is not None:
            progress(min(done, total), total)
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))

    if progress is not None:
        progress(0, total)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    with torch.inference_mode():
        out = sliding_window_inference(x, (WINDOW, WINDOW, WINDOW), sw_batch_size, predictor, overlap=overlap,
                                       mode=mode, padding_mode="constant", cval=0.0)
        probs = torch.sigmoid_(out[0])
    if done != total:
        log.warning("sliding windows: ran %d windows, expected %d", done, total)
        if progress is not None:
            progress(total, total)
    return probs.numpy()


# ---- the pipeline ---------------------------------------------------------------------------

def segment(ct: Volume, class_indices: Sequence[int], runner: Runner,
            class_table: Mapping[int, np.ndarray] | np.ndarray, spacing_mm: float = MODEL_SPACING_MM,
            overlap: float = DEFAULT_OVERLAP, sw_batch_size: int = DEFAULT_SW_BATCH_SIZE, mode: str = "gaussian",
            min_lesion_mm3: float | None = None, lesion_peak: float | None = None,
            progress: ProgressCallback | None = None, validated_classes: Sequence[int] | None = None, crop_to_body: bool = True,
            add_hosts: bool = True, calibration: Calibration = UNCALIBRATED) -> SegmentationResult:
    """Segment ``class_indices`` in ``ct`` (HU, any grid) with ``runner`` (see module docstring).

    ``spacing_mm``: model-space spacing (1.5; FAST_SPACING_MM = 3.0 for ``--fast``);
    ``overlap`` in [0, 1); ``mode``: "gaussian" or "constant" blending; ``min_lesion_mm3``:
    smaller lesion components are removed (None: each class's default,
    :func:`~radmesh.model.postprocess.default_min_lesion_mm3`), and those whose peak probability is below
    ``lesion_peak`` (None: the calibration's); ``calibration``: the weights' post-processing values
    (:func:`radmesh.model.calibration.load_calibration`; default none); ``validated_classes``: when given, requested
    classes outside it raise FailedPreconditionError (:func:`check_classes`);
    ``crop_to_body=False`` tiles the whole canonical volume, exactly as MONAI's
    ``sliding_window_inference`` on the uncropped image does (slower; the windows, and so
    the pooled image feature that conditions each window's heads, are then those of the
    usual MONAI pipeline); ``add_hosts`` (default) also segments the host organs of
    requested lesions (:func:`with_hosts`): they are in the label map and the result,
    listed in ``host_classes``.
    """
    t0 = time.perf_counter()
    if not isinstance(ct, Volume):
        raise InvalidInputError(f"ct must be a Volume, got {type(ct).__name__}")
    if not np.issubdtype(ct.array.dtype, np.number) or np.issubdtype(ct.array.dtype, np.complexfloating):
        raise InvalidInputError(f"CT voxels must be real numbers (HU), got dtype {ct.array.dtype}")
    validated = validated_classes if validated_classes is not None else [c.index for c in vocab.CLASSES]
    requested = check_classes(class_indices, validated)
    classes = with_hosts(requested, validated) if add_hosts else requested
    if not (np.isfinite(spacing_mm) and 0.5 <= float(spacing_mm) <= 10.0):
        raise InvalidInputError(f"spacing_mm must be in 0.5..10 mm, got {spacing_mm}")
    if not 0.0 <= float(overlap) < 1.0:
        raise InvalidInputError(f"overlap must be in [0, 1), got {overlap}")
    if mode not in BLEND_MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(BLEND_MODES)}, got {mode!r}")
    if int(sw_batch_size) < 1:
        raise InvalidInputError(f"sw_batch_size must be at least 1, got {sw_batch_size}")
    if min_lesion_mm3 is not None and not min_lesion_mm3 >= 0:
        raise InvalidInputError(f"min_lesion_mm3 must be ≥ 0, got {min_lesion_mm3}")
    embedding = class_embeddings(classes, class_table)
    expected_e = getattr(runner, "embed_dim", None)
    if expected_e is not None and embedding.shape[1] != int(expected_e):
        raise FailedPreconditionError(f"the class table has {embedding.shape[1]}-dimensional embeddings but the model "
                                      f"takes {int(expected_e)} (a table from another text encoder?)")

    batch = int(sw_batch_size)
    runner_max = getattr(runner, "max_batch_size", None)
    if runner_max:
        batch = min(batch, int(runner_max))

    model_image = to_model_space(ct, float(spacing_mm))
    if crop_to_body:
        box, body = body_crop(ct, model_image.geometry)
    else:
        box, body = tuple(slice(0, n) for n in model_image.array.shape), body_on_grid(ct, model_image.geometry)
    crop = model_image.array[box]
    t1 = time.perf_counter()

    probs = sliding_window_probabilities(crop, embedding, runner, overlap=float(overlap),
                                         sw_batch_size=batch, mode=mode, progress=progress)
    t2 = time.perf_counter()

    post = calibration.postprocess_kwargs()
    if lesion_peak is not None:
        post["lesion_peak"] = float(lesion_peak)
    out, t3 = labels_on_ct_grid(probs, classes, model_image, box, body, ct.geometry,
                                min_lesion_mm3=min_lesion_mm3, **post)
    del probs
    counts_all = np.bincount(out.array.ravel(), minlength=vocab.NUM_CLASSES + 1)
    voxel_ml = ct.geometry.voxel_volume_mm3 / 1000.0
    counts = {c: int(counts_all[c]) for c in classes}
    t4 = time.perf_counter()
    timings = {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2, "resample": t4 - t3,
               "total": t4 - t0}
    return SegmentationResult(
        labels=out, class_indices=classes, voxel_counts=counts,
        volumes_ml={c: n * voxel_ml for c, n in counts.items()}, timings_s=timings,
        windows=window_count(crop.shape, float(overlap)), spacing_mm=float(spacing_mm),
        model_grid=model_image.geometry, body_box_zyx=tuple((s.start, s.stop) for s in box),
        host_classes=classes[len(requested):])


def labels_on_ct_grid(probs: np.ndarray, classes: Sequence[int], model_image: Volume, box: tuple[slice, ...],
                      body: np.ndarray, ct_geometry: Geometry, **postprocess_kwargs: Any) -> tuple[Volume, float]:
    """(K, z, y, x) probabilities on the body crop ``box`` of ``model_image`` → (uint8 label map on
    ``ct_geometry``, perf_counter time when post-processing ended). ``body``: the body mask on the
    crop (:func:`~radmesh.model.preprocess.body_crop`); keywords go to :func:`postprocess`. Lesion
    fragments that the resampling splits off are absorbed on the CT's grid
    (:func:`~radmesh.model.postprocess.absorb_lesion_fragments`, with the request's ``min_lesion_mm3``)."""
    spacing_mm = float(model_image.geometry.spacing_xyz_mm[0])
    labels = np.zeros(model_image.array.shape, dtype=np.uint8)
    labels[box] = postprocess(probs, classes, spacing_mm, body_mask=body, image=model_image.array[box],
                              **postprocess_kwargs)
    t_post = time.perf_counter()
    out = from_model_space(Volume(labels, model_image.geometry), ct_geometry).array.astype(np.uint8, copy=False)
    absorb_lesion_fragments(out, ct_geometry.voxel_volume_mm3, postprocess_kwargs.get("min_lesion_mm3"))
    return Volume(out, ct_geometry), t_post


def segment_volume(ct: Volume, model: torch.nn.Module | None = None, meta: Mapping[str, Any] | None = None, *,
                   runner: Runner | None = None, classes: Sequence[int] | None = None, fast: bool = False,
                   **kwargs: Any) -> Volume:
    """The label map of ``classes`` (default: all the model's validated classes) on ``ct``'s grid,
    for a model loaded with ``radmesh.model.train.load_weights`` (``model``, ``meta``).

    ``runner`` overrides the in-process PyTorch runner (e.g. an OnnxRunner of the same
    weights); ``fast`` uses FAST_SPACING_MM; the post-processing uses the weights' calibration
    (``meta["calibration"]``, from ``load_weights``); other keywords go to :func:`segment`.
    """
    if meta is None:
        raise InvalidInputError("segment_volume needs the model's meta (classes, class_embedding)")
    if runner is None:
        if model is None:
            raise InvalidInputError("segment_volume needs a model or a runner")
        runner = TorchRunner(model)
    validated = [int(c) for c in meta["classes"]]
    spacing = FAST_SPACING_MM if fast else float(meta.get("spacing_mm", MODEL_SPACING_MM))
    kwargs.setdefault("spacing_mm", spacing)
    kwargs.setdefault("calibration", meta.get("calibration", UNCALIBRATED))
    result = segment(ct, classes if classes is not None else validated, runner, class_table_from_meta(meta),
                     validated_classes=validated, **kwargs)
    return result.labels
