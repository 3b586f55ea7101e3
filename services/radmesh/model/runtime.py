"""The model as a user runs it: shipped weights → cached ONNX graph → ONNX Runtime.

``radmesh segment`` and ``radmesh export`` go through here. The ONNX graph of a
weights file is exported once and cached under ``RADMESH_CACHE`` (default
``~/.cache/radmesh``), named by the weights' SHA-256 and the exporter's format version, so a changed
weights file or exporter never runs with a stale graph.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.fileio import write_text_atomic
from radmesh.common.imageio import write_volume
from radmesh.common.volume import Volume
from radmesh.model.evaluate import default_weights_path


def cache_dir() -> Path:
    return Path(os.environ.get("RADMESH_CACHE", Path.home() / ".cache" / "radmesh"))


def load(weights: str | os.PathLike | None = None):
    """(model, meta) of a weights file (default: the shipped reference weights).

    Loaded once per process and file: a `radmesh segment` checks the classes, exports
    and segments with the same weights, and should read them once.
    """
    path = Path(weights) if weights else default_weights_path()
    if not path.is_file():
        raise FailedPreconditionError(f"model weights {path} not found (set RADMESH_MODEL_WEIGHTS or --weights)")
    from radmesh.model.calibration import calibration_path

    sidecar = calibration_path(path)
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns,
                        sidecar.stat().st_mtime_ns if sidecar.is_file() else None)


@lru_cache(maxsize=2)
def _load_cached(path: str, mtime_ns: int, calibration_mtime_ns: int | None):
    from radmesh.model.train import load_weights

    return load_weights(path)


def onnx_for(weights: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> tuple[Path, Any]:
    """The verified ONNX graph of ``weights`` (exported on first use) and the export result or None if cached."""
    from radmesh.model.export import FORMAT, export_onnx

    model, meta = load(weights)
    # keyed by the weights and the graph format, so neither a new file nor a new exporter reuses an old graph
    key = hashlib.sha256(f"{meta['file_sha256']}:{FORMAT}".encode()).hexdigest()[:16]
    target = Path(out) if out else cache_dir() / "onnx" / f"{key}.onnx"
    if target.is_file() and out is None:
        return target, None
    target.parent.mkdir(parents=True, exist_ok=True)
    result = export_onnx(model, target, metadata={"radmesh.model_version": str(meta.get("model_version", "")),
                                                  "radmesh.encoder_id": str(meta.get("encoder_id", "")),
                                                  "radmesh.classes": ",".join(str(c) for c in meta["classes"])})
    return target, result


def resolve_targets(prompt: str | None, classes: Sequence[int] | None) -> tuple[list[int], dict[str, Any] | None]:
    """Classes from explicit indices, or from a prompt through Parse (refusing what it cannot map)."""
    if classes:
        return [vocab.get(c).index for c in classes], None
    if not prompt:
        raise InvalidInputError("give --prompt or --classes")
    from radmesh.text.parse import parse

    intent = parse(prompt)
    if intent.unsupported or not intent.targets:
        near = ", ".join(vocab.get(c).name for c in intent.suggestions)
        raise InvalidInputError(f"nothing to segment in {prompt!r}: {intent.unsupported_phrase or 'no target'} is "
                                f"not in the vocabulary" + (f" (nearest: {near})" if near else ""))
    out: list[int] = []
    for t in intent.targets:
        if t.class_index not in out:
            out.append(t.class_index)
    return out, intent.to_dict()


def segment_to_folder(ct: Volume, out_dir: str | os.PathLike, prompt: str | None = None,
                      classes: Sequence[int] | None = None, weights: str | os.PathLike | None = None,
                      fast: bool = False, overlap: float | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      min_lesion_mm3: float | None = None) -> dict[str, Any]:
    """Segment in-process with ONNX Runtime; write labels.nii.gz and segmentation.json to ``out_dir``."""
    from radmesh.model.onnx_runner import OnnxRunner
    from radmesh.model.pipeline import DEFAULT_OVERLAP, check_classes, class_table_from_meta, segment
    from radmesh.model.preprocess import FAST_SPACING_MM, MODEL_SPACING_MM

    requested, intent = resolve_targets(prompt, classes)
    _, meta = load(weights)
    check_classes(requested, meta["classes"])  # refuse before any heavy work
    onnx_path, _ = onnx_for(weights)
    result = segment(ct, requested, OnnxRunner(onnx_path), class_table_from_meta(meta),
                     spacing_mm=FAST_SPACING_MM if fast else MODEL_SPACING_MM,
                     overlap=DEFAULT_OVERLAP if overlap is None else overlap, progress=progress,
                     min_lesion_mm3=min_lesion_mm3,
                     validated_classes=meta["classes"], calibration=meta["calibration"])
    summary = {
        "prompt": prompt, "intent": intent,
        "classes": classes_summary(result.class_indices, result.voxel_counts, result.volumes_ml,
                                   result.host_classes),
        "model": {"model_version": meta.get("model_version"), "encoder_id": meta.get("encoder_id"),
                  "weights": str(meta["path"]), "runtime": "onnxruntime",
                  "postprocess_calibration": meta["calibration"].name},
        "spacing_mm": result.spacing_mm, "windows": result.windows,
        "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
    }
    write_segmentation(out_dir, result.labels, summary)
    return summary


def classes_summary(class_indices: Sequence[int], voxel_counts: Mapping[int, int],
                    volumes_ml: Mapping[int, float], host_classes: Sequence[int] = ()) -> list[dict[str, Any]]:
    """segmentation.json's ``classes``: per class (requested, then host organs added for requested
    lesions), found, voxel_count, volume_ml (mL, 3 decimals), host_only."""
    return [{"class_index": c, "name": vocab.get(c).name, "found": voxel_counts[c] > 0,
             "voxel_count": int(voxel_counts[c]), "volume_ml": round(float(volumes_ml[c]), 3),
             "host_only": c in host_classes}
            for c in class_indices]


def write_segmentation(out_dir: str | os.PathLike, labels: Volume, summary: dict[str, Any]) -> None:
    """Write ``out_dir``/labels.nii.gz and ``out_dir``/segmentation.json (in-process and --server alike)."""
    out = Path(out_dir)
    write_volume(labels, out / "labels.nii.gz")
    write_text_atomic(out / "segmentation.json", json.dumps(summary, indent=2) + "\n")
