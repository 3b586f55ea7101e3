"""The post-processing values that belong to one set of weights: a JSON file beside them.

A model's probabilities are only as wide or as narrow, as leaky or as sure, as that model
draws them. So the values that compensate (a threshold per class, the radius of each
organ's opening, the peak a lesion needs, how elongated a lesion may be) are measured for
one weights file on validation cases (:mod:`radmesh.model.calibrate`) and travel with that
file: ``<weights stem>.calibration.json`` beside ``<weights stem>.pt``, bound to the weights
by their SHA-256. Weights without one get :data:`UNCALIBRATED` (0.5 for every class, no
openings, no peak or elongation rule: the published Universal Model's own post-processing).
The rules that are anatomy rather than a model's habits (lesions inside their host, the smallest
lesion, vessels' specks) stay in :mod:`radmesh.model.postprocess` for every model.

A calibration file made for other weights is refused (FailedPreconditionError naming
both hashes), never applied: it would move every organ's edge by a model's habits that
these weights do not have.

File format (JSON; class names are the vocabulary's)::

    {"format": "radmesh-postprocess-calibration", "format_version": 1,
     "weights_sha256": "<64 hex>", "model_version": "...", "chosen_on": "<how, on which cases>",
     "class_threshold": {"Spleen": 0.2, ...},      # probability in [0, 1); others 0.5
     "organ_opening_mm": {"Stomach": 9.0, ...},    # organs only, mm ≥ 0; others none
     "lesion_peak": 0.99,                          # probability in [0, 1]
     "lesion_max_elongation": {"Liver Tumor": 2.5, ...}}   # lesions only, ratio ≥ 1; others none
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import FailedPreconditionError
from radmesh.common.fileio import file_sha256, write_text_atomic
from radmesh.model.postprocess import THRESHOLD, is_elongation, is_opening_mm, is_share, is_threshold

FORMAT = "radmesh-postprocess-calibration"
FORMAT_VERSION = 1
SUFFIX = ".calibration.json"


@dataclass(frozen=True)
class Calibration:
    """Post-processing values for one weights file (vocabulary index → value)."""

    class_threshold: Mapping[int, float] = field(default_factory=dict)   # rule 1; classes not listed: 0.5
    organ_opening_mm: Mapping[int, float] = field(default_factory=dict)  # rule 3; organs not listed: none
    lesion_peak: float = THRESHOLD                                       # rule 6; at 0.5 it removes nothing
    lesion_max_elongation: Mapping[int, float] = field(default_factory=dict)  # rule 6; lesions not listed: none
    source: str | None = None                                            # the file it came from, None: uncalibrated

    def postprocess_kwargs(self) -> dict[str, Any]:
        """The keywords of :func:`radmesh.model.postprocess.postprocess` this calibration sets."""
        return dict(class_threshold=dict(self.class_threshold), organ_opening_mm=dict(self.organ_opening_mm),
                    lesion_peak=float(self.lesion_peak), lesion_max_elongation=dict(self.lesion_max_elongation))

    @property
    def name(self) -> str:
        """The calibration file's name, as results report it ("" when uncalibrated)."""
        return Path(self.source).name if self.source else ""


UNCALIBRATED = Calibration()


def calibration_path(weights: str | os.PathLike) -> Path:
    """``model_weights/x.pt`` → ``model_weights/x.calibration.json``."""
    p = Path(weights)
    return p.with_name(p.stem + SUFFIX)


def load_calibration(weights: str | os.PathLike, weights_sha256: str | None = None) -> Calibration:
    """The calibration beside ``weights`` (:data:`UNCALIBRATED` when there is none).

    ``weights_sha256``: the weights file's hash when the caller has it already. Raises
    FailedPreconditionError naming the file and the problem: unreadable, another format,
    made for other weights, an unknown class, a value out of range.
    """
    path = calibration_path(weights)
    if not path.is_file():
        return UNCALIBRATED
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FailedPreconditionError(f"calibration {path} is not readable JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise FailedPreconditionError(f"{path} is not a radmesh calibration file (format {FORMAT} version "
                                      f"{FORMAT_VERSION})")
    sha = weights_sha256 or file_sha256(weights)
    if doc.get("weights_sha256") != sha:
        raise FailedPreconditionError(
            f"calibration {path} was made for weights with sha256 {doc.get('weights_sha256')}, but {weights} has "
            f"sha256 {sha}: calibrate these weights (python -m radmesh.model.calibrate) or remove the file")
    thresholds = _by_class(path, doc, "class_threshold", is_threshold, "a probability in [0, 1)")
    openings = _by_class(path, doc, "organ_opening_mm", is_opening_mm, "millimetres ≥ 0", vocab.Kind.ORGAN)
    peak = doc.get("lesion_peak", THRESHOLD)
    if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not is_share(float(peak)):
        raise FailedPreconditionError(f"calibration {path}: lesion_peak must be a probability in [0, 1], got {peak!r}")
    elongations = _by_class(path, doc, "lesion_max_elongation", is_elongation, "a finite ratio ≥ 1 (0: no rule)",
                            vocab.Kind.LESION)
    return Calibration(thresholds, openings, float(peak), elongations, str(path))


def write_calibration(weights: str | os.PathLike, calibration: Calibration, model_version: str,
                      chosen_on: str) -> Path:
    """Write ``calibration`` beside ``weights``, bound to their SHA-256; the path written.

    ``chosen_on`` says how and on which cases the values were chosen (the file's record of it).
    Written to a temporary file and renamed, so a reader never sees half a file.
    """
    path = calibration_path(weights)
    doc = dict(format=FORMAT, format_version=FORMAT_VERSION, weights_sha256=file_sha256(weights),
               model_version=str(model_version), chosen_on=str(chosen_on),
               class_threshold={vocab.get(c).name: float(t) for c, t in sorted(calibration.class_threshold.items())},
               organ_opening_mm={vocab.get(c).name: float(r) for c, r in sorted(calibration.organ_opening_mm.items())},
               lesion_peak=float(calibration.lesion_peak))
    if calibration.lesion_max_elongation:
        doc["lesion_max_elongation"] = {vocab.get(c).name: float(v)
                                        for c, v in sorted(calibration.lesion_max_elongation.items())}
    return write_text_atomic(path, json.dumps(doc, indent=1) + "\n")


def _by_class(path: Path, doc: Mapping[str, Any], key: str, ok, meaning: str,
              kind: vocab.Kind | None = None) -> dict[int, float]:
    """``doc[key]`` (class name → number) by vocabulary index, each value ``ok``; with ``kind``, every
    class listed must be of that kind (openings: organs; elongations: lesions)."""
    table = doc.get(key, {})
    if not isinstance(table, dict):
        raise FailedPreconditionError(f"calibration {path}: {key} must map class names to numbers")
    out: dict[int, float] = {}
    for name, value in table.items():
        try:
            c = vocab.by_name(name).index
        except vocab.UnknownClassError:
            raise FailedPreconditionError(f"calibration {path}: {key} names {name!r}, not a class of the "
                                          f"vocabulary") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not ok(float(value)):
            raise FailedPreconditionError(f"calibration {path}: {key}[{name!r}] must be {meaning}, got {value!r}")
        out[c] = float(value)
    wrong = [vocab.get(c).name for c in out if kind is not None and vocab.get(c).kind is not kind]
    if wrong:
        raise FailedPreconditionError(f"calibration {path}: {key} lists {', '.join(wrong)}, which are not "
                                      f"{kind.value}s")
    return out
