"""Choosing the lesion post-processing thresholds on validation phantoms: ``python -m radmesh.model.calibrate``.

The thresholds that decide which predicted lesion components survive post-processing
(the weights' ``lesion_peak``, :mod:`radmesh.model.calibration`, the minimum peak
probability of a component, and the minimum lesion volume) change the evaluation's sensitivity and
false positives directly, so they must not be chosen on the evaluation phantoms
(seeds 0–19; 0–99 are reserved) and not on training phantoms (seeds ≥ 1000, which the
model has seen). Calibration uses seeds from :data:`VALIDATION_SEEDS` (100–999).

For each validation seed: the phantom (default full-size config, as the evaluation
uses; ``--lesions`` forces the lesion classes, so a few cases hold many lesions to lose),
the production pipeline's model space, body crop and sliding-window
probabilities of every validated class (the weights' in-process PyTorch runner),
computed once and kept as float16. Then for every (lesion_peak, min_lesion_mm3) of
the grid, :func:`radmesh.model.pipeline.labels_on_ct_grid` (the pipeline's own
post-processing and resampling) and :func:`radmesh.model.evaluate.case_metrics`;
:func:`radmesh.model.evaluate.summarise` over the seeds gives one table row.

The recommended setting is the one with the fewest false positives per case among
those whose lesion sensitivity is the best of the grid (ties: the lower thresholds,
which cut less). The table, not the recommendation, is the output to read: with a few
validation cases a difference of one lesion is a large step.

``--organ-opening-mm`` sweeps the organ rule's opening radius (the weights'
``organ_opening_mm``) the same way: each value is one radius for every organ, ``default``
the per-organ table of the weights' calibration file (none when they have none). A second table gives each
organ's mean Dice per radius, and the recommended radius of an organ is the one with its
best Dice (ties: the smaller radius, which cuts less). An organ's opening changes its own
mask only (and, through overlaps, barely its neighbours'), so the radii are chosen per organ
from uniform sweeps.

``--organ-threshold`` does the same for rule 1's probability threshold of the organs and
vessels (the weights' ``class_threshold``; ``default`` their calibration file's table):
one value for every organ and vessel per row, each one's best mean Dice recommended (values
within 0.005 of it tie, and ties go to the value nearest 0.5, the sigmoid's own decision).
``--lesion-threshold`` sweeps rule 1's threshold of the lesion classes, one value for all of them per
row; it is chosen with the lesion peak, minimum and enclosure above (sensitivity, then false
positives, then the lower value). A lesion drawn at a higher threshold is drawn less far into its
host, which also lets it pass the enclosure rule. ``--lesion-max-elongation`` sweeps rule 6's largest
elongation of a lesion (the weights' per-class ``lesion_max_elongation``), one value for every lesion
class per row (0: no rule), at the lesion settings recommended from the rows with the weights' own
elongations; each lesion class gets the value that finds most of its lesions, then leaves the fewest
of its false positives (ties: the value that cuts least, no rule first). A rule on one class's
components moves no other class's lesions, so the classes are chosen apart, as the organs' openings.

The recommendations are printed and written to ``--json``; the calibration file beside the
weights (:mod:`radmesh.model.calibration`, whose docstring gives its format) is what the
pipeline applies. ``--write-calibration`` writes it from this run: the recommended lesion
peak, and the recommended organ openings, organ and vessel thresholds, lesion threshold and lesion
elongations where the run swept them (the weights' current values where it did not). The minimum
lesion size and the enclosure share are printed only: they are rules for every model, not a calibration.
"""

from __future__ import annotations

import argparse
import json
import itertools
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Volume
from radmesh.model.calibration import UNCALIBRATED, Calibration, write_calibration
from radmesh.model.evaluate import case_metrics, default_weights_path, summarise
from radmesh.model.postprocess import HOST_ENCLOSURE, THRESHOLD, is_elongation, is_opening_mm, is_share, is_threshold
from radmesh.phantom.generator import Phantom, PhantomConfig, generate

VALIDATION_SEEDS = range(100, 1000)
DEFAULT_SEEDS = (100, 101, 102, 103)
DEFAULT_PEAKS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
# None: each class's default (radmesh.model.postprocess.default_min_lesion_mm3). No higher than
# 100 mm³: a lesion 10 mm across (the sensitivity bar's size) can be as flat as 10 × 7 × 5 mm,
# 192 mm³, and must survive being segmented at half its volume.
DEFAULT_MIN_LESION_MM3: tuple[float | None, ...] = (None, 20.0, 50.0, 100.0)
DEFAULT_HOST_ENCLOSURE = (0.0, 0.5, 0.6, 0.7)
# None: the weights' per-organ radii (their calibration file, radmesh.model.calibration).
DEFAULT_ORGAN_OPENING_MM: tuple[float | None, ...] = (None,)
# None: the weights' per-class thresholds (their calibration file).
DEFAULT_ORGAN_THRESHOLD: tuple[float | None, ...] = (None,)
# None: the weights' lesion thresholds (their calibration file; 0.5 for a lesion it does not list).
DEFAULT_LESION_THRESHOLD: tuple[float | None, ...] = (None,)
# None: the weights' lesion elongations (their calibration file; a class it does not list: no rule). The
# grid to sweep (0: no rule) stops at 2.5: the phantom's lesions are up to 1.9 times as long as they are
# thick (semi-axes c ≥ 0.525 a, radmesh.phantom.lesions), a scan's thick slices stretch a small one
# further (2.3 on validation seeds 100-115), and a lower limit cuts into real lesions.
ELONGATION_GRID = (0.0, 4.0, 3.5, 3.0, 2.75, 2.5)
DEFAULT_LESION_MAX_ELONGATION: tuple[float | None, ...] = (None,)
# Mean Dice differences this small are noise on a few validation cases (seeds 100-107: an organ's Dice
# moves by about this much between neighbouring thresholds): they do not move a threshold off 0.5.
THRESHOLD_DICE_TOLERANCE = 0.005
# The per-organ settings a sweep can vary, and the classes each applies to.
PER_ORGAN_KEYS = {"organ_opening_mm": (vocab.Kind.ORGAN,), "organ_threshold": (vocab.Kind.ORGAN, vocab.Kind.VESSEL)}
# The settings a sweep can vary that decide which lesions survive (each row holds one value of each).
LESION_KEYS = ("lesion_peak", "min_lesion_mm3", "host_enclosure", "lesion_threshold")
# The per-class settings chosen class by class from uniform sweeps; a row's None is the weights' own table.
PER_CLASS_KEYS = (*PER_ORGAN_KEYS, "lesion_max_elongation")


@dataclass
class CachedCase:
    """One validation phantom and its model-space probabilities (float16) on the body crop
    ``box``, with the body mask of that crop (:func:`radmesh.model.preprocess.body_crop`)."""

    phantom: Phantom
    model_image: Volume
    box: tuple[slice, ...]
    body: np.ndarray
    probabilities: np.ndarray


def check_validation_seeds(seeds: Iterable[int]) -> list[int]:
    out = [int(s) for s in seeds]
    if not out:
        raise InvalidInputError("calibration needs at least one validation seed")
    bad = [s for s in out if s not in VALIDATION_SEEDS]
    if bad:
        raise InvalidInputError(f"seeds {bad} are not validation seeds ({VALIDATION_SEEDS.start}–"
                                f"{VALIDATION_SEEDS.stop - 1}): 0–99 are the evaluation's, ≥ 1000 the training's")
    return out


def cache_case(seed: int, model, meta: dict, overlap: float, config: PhantomConfig | None = None) -> CachedCase:
    from radmesh.model.pipeline import TorchRunner, class_embeddings, class_table_from_meta, \
        sliding_window_probabilities
    from radmesh.model.preprocess import MODEL_SPACING_MM, body_crop, to_model_space

    ph = generate(seed, config or PhantomConfig())
    classes = [int(c) for c in meta["classes"]]
    embedding = class_embeddings(classes, class_table_from_meta(meta))
    model_image = to_model_space(ph.ct, float(meta.get("spacing_mm", MODEL_SPACING_MM)))
    box, body = body_crop(ph.ct, model_image.geometry)
    probs = sliding_window_probabilities(model_image.array[box], embedding, TorchRunner(model), overlap=overlap)
    return CachedCase(ph, model_image, box, body, probs.astype(np.float16))


def sweep(cases: Sequence[CachedCase], classes: Sequence[int], peaks: Sequence[float],
          min_lesion_mm3: Sequence[float | None], host_enclosure: Sequence[float] = (HOST_ENCLOSURE,),
          organ_opening_mm: Sequence[float | None] = DEFAULT_ORGAN_OPENING_MM,
          organ_threshold: Sequence[float | None] = DEFAULT_ORGAN_THRESHOLD,
          calibration: Calibration = UNCALIBRATED,
          lesion_threshold: Sequence[float | None] = DEFAULT_LESION_THRESHOLD,
          lesion_max_elongation: Sequence[float | None] = DEFAULT_LESION_MAX_ELONGATION) -> list[dict]:
    """One summary row per (lesion_peak, min_lesion_mm3, host_enclosure, organ_opening_mm, organ_threshold,
    lesion_threshold, lesion_max_elongation); a None minimum is each class's default, a None opening,
    threshold or elongation the table of ``calibration`` (the weights'), a number that radius for every
    organ, that threshold for every organ and vessel, that threshold for every lesion class, or that
    elongation for every lesion class (0: no rule)."""
    from radmesh.model.pipeline import labels_on_ct_grid

    organs = [c for c in classes if vocab.get(c).kind is vocab.Kind.ORGAN]
    anatomy = [c for c in classes if vocab.get(c).kind in (vocab.Kind.ORGAN, vocab.Kind.VESSEL)]
    rows = []
    lesions = [c for c in classes if vocab.get(c).is_lesion]
    for peak, mm3, share, radius, thr, les_thr, elong in itertools.product(peaks, min_lesion_mm3, host_enclosure,
                                                                           organ_opening_mm, organ_threshold,
                                                                           lesion_threshold, lesion_max_elongation):
        per_case = []
        openings = calibration.organ_opening_mm if radius is None else {c: float(radius) for c in organs}
        thresholds = dict(calibration.class_threshold)
        if thr is not None:
            thresholds.update({c: float(thr) for c in anatomy})
        if les_thr is not None:
            thresholds.update({c: float(les_thr) for c in lesions})
        for case in cases:
            labels, _ = labels_on_ct_grid(case.probabilities.astype(np.float32), classes, case.model_image,
                                          case.box, case.body, case.phantom.ct.geometry,
                                          lesion_peak=float(peak), host_enclosure=float(share),
                                          min_lesion_mm3=None if mm3 is None else float(mm3),
                                          organ_opening_mm=openings, class_threshold=thresholds,
                                          lesion_max_elongation=calibration.lesion_max_elongation if elong is None
                                          else {c: float(elong) for c in lesions})
            per_case.append(case_metrics(case.phantom.ct, case.phantom.labels, case.phantom.truth, labels))
        s = summarise(per_case)
        rows.append(dict(lesion_peak=float(peak), min_lesion_mm3=None if mm3 is None else float(mm3),
                         host_enclosure=float(share), organ_opening_mm=None if radius is None else float(radius),
                         organ_threshold=None if thr is None else float(thr),
                         lesion_threshold=None if les_thr is None else float(les_thr),
                         lesion_max_elongation=None if elong is None else float(elong),
                         sensitivity=s["lesions"]["sensitivity"],
                         detected=s["lesions"]["detected"],
                         total=s["lesions"]["total"], fp_per_case=s["lesions"]["fp_per_case"],
                         median_diameter_error_mm=s["lesions"]["median_abs_diameter_error_mm"],
                         lesion_classes=s["lesions"]["per_class"],
                         mean_organ_dice=s["mean_organ_dice"],
                         organ_dice={name: v["mean"] for name, v in s["organs"].items()}))
    return rows


def recommend(rows: Sequence[dict]) -> dict:
    """The fewest false positives among the rows with the best sensitivity (ties: lower thresholds), among
    the rows with the weights' own organ openings, thresholds and lesion elongations when the sweep has any
    (the lesion thresholds are chosen for the organ masks the weights will be served with)."""
    own = [r for r in rows if all(r.get(k) is None for k in PER_CLASS_KEYS)]
    rows = own or list(rows)
    best = max(r["sensitivity"] for r in rows)
    top = [r for r in rows if r["sensitivity"] >= best - 1e-12]
    # a lesion threshold of None is the weights' current one: it wins ties, then the lower value
    return min(top, key=lambda r: (r["fp_per_case"], r["lesion_peak"], r["min_lesion_mm3"] or 0.0,
                                   r["host_enclosure"], r.get("lesion_threshold") is not None,
                                   r.get("lesion_threshold") or 0.0))


def at_lesion_settings(rows: Sequence[dict], chosen: Mapping) -> list[dict]:
    """The rows with ``chosen``'s lesion settings (:data:`LESION_KEYS`). The organ recommendations and tables
    read only these: lesion voxels that a setting drops fall back to their host, so the same organ setting
    scores differently at other lesion settings, and the calibration pairs the organs with these."""
    return [r for r in rows if all(r.get(k) == chosen.get(k) for k in LESION_KEYS)]


def others_are_own(row: Mapping, key: str) -> bool:
    """Whether every per-class setting of ``row`` other than ``key`` is the weights' own table (None)."""
    return all(row.get(k) is None for k in PER_CLASS_KEYS if k != key)


def first_row_per_value(rows: Sequence[dict], key: str) -> dict[float | None, dict]:
    """Value of the per-class setting ``key`` → the first row with it among those whose other per-class
    settings are the weights' own (the columns of the per-class tables)."""
    per_value: dict[float | None, dict] = {}
    for r in rows:
        if others_are_own(r, key):
            per_value.setdefault(r.get(key), r)
    return per_value


def recommend_per_organ(rows: Sequence[dict], key: str, preference, tolerance: float = 0.0) -> dict[str, float]:
    """Organ (or vessel) name → the uniform value of ``key`` ("organ_opening_mm", "organ_threshold") whose
    rows give its best mean Dice; values within ``tolerance`` of that Dice tie with it, and ties go to the
    value ``preference`` ranks lowest. Only rows where ``key`` is a number and every other per-organ key
    is the weights' own table (None) are candidates."""
    uniform = [r for r in rows if r.get(key) is not None and others_are_own(r, key)]
    dice: dict[str, list[tuple[float, float]]] = {}
    for r in uniform:
        for name, d in r["organ_dice"].items():
            if vocab.by_name(name).kind in PER_ORGAN_KEYS[key] and not math.isnan(d):
                dice.setdefault(name, []).append((r[key], d))
    out = {}
    for name, scores in dice.items():
        best = max(d for _, d in scores)
        out[name] = min((v for v, d in scores if d >= best - tolerance - 1e-12), key=preference)
    return out


def recommend_openings(rows: Sequence[dict]) -> dict[str, float]:
    """Organ name → opening radius, mm (ties: the smaller radius, which cuts less; vessels are never opened)."""
    return recommend_per_organ(rows, "organ_opening_mm", lambda radius: radius)


def recommend_thresholds(rows: Sequence[dict]) -> dict[str, float]:
    """Organ or vessel name → rule 1's threshold: within :data:`THRESHOLD_DICE_TOLERANCE` of the organ's best
    Dice, the value nearest 0.5 (the sigmoid's own decision; then the lower)."""
    return recommend_per_organ(rows, "organ_threshold", lambda t: (abs(t - THRESHOLD), t),
                               tolerance=THRESHOLD_DICE_TOLERANCE)


def recommend_elongations(rows: Sequence[dict]) -> dict[str, float]:
    """Lesion class name → rule 6's largest elongation: of the rows with one elongation for every lesion class
    (and the weights' own per-organ settings), the value that finds most of the class's lesions, then leaves
    the fewest of its false positives (ties: the value that cuts least: 0, no rule, then the largest)."""
    uniform = [r for r in rows if r.get("lesion_max_elongation") is not None
               and others_are_own(r, "lesion_max_elongation")]
    scores: dict[str, list[tuple[float, int, int]]] = {}
    for r in uniform:
        for name, d in r["lesion_classes"].items():
            scores.setdefault(name, []).append((r["lesion_max_elongation"], d["detected"], d["false_positives"]))
    return {name: min(s, key=lambda v: (-v[1], v[2], v[0] != 0.0, -v[0]))[0] for name, s in scores.items()}


def recommended_calibration(current: Calibration, lesion_peak: float, openings: dict[str, float] | None,
                            thresholds: dict[str, float] | None, lesion_threshold: float | None = None,
                            lesions: Sequence[int] = (), elongations: dict[str, float] | None = None) -> Calibration:
    """``current`` with the recommended values of a run (names as the recommend functions give them; None:
    not swept, keep the current values). ``lesion_threshold`` applies to the lesion classes ``lesions``.
    Openings and elongations of 0 and thresholds of 0.5 are left out: they are what a class not listed gets."""
    def by_index(table: dict[str, float] | None, old: Mapping[int, float], plain: float,
                 kinds: tuple[vocab.Kind, ...]) -> dict[int, float]:
        if table is None:
            return {c: v for c, v in old.items() if vocab.get(c).kind in kinds}
        return {vocab.by_name(n).index: float(v) for n, v in table.items() if float(v) != plain}

    anatomy = (vocab.Kind.ORGAN, vocab.Kind.VESSEL)
    class_threshold = by_index(thresholds, current.class_threshold, THRESHOLD, anatomy)
    if lesion_threshold is None:
        class_threshold.update({c: v for c, v in current.class_threshold.items() if vocab.get(c).is_lesion})
    elif float(lesion_threshold) != THRESHOLD:
        class_threshold.update({int(c): float(lesion_threshold) for c in lesions})
    return Calibration(class_threshold=class_threshold,
                       organ_opening_mm=by_index(openings, current.organ_opening_mm, 0.0, (vocab.Kind.ORGAN,)),
                       lesion_peak=float(lesion_peak),
                       lesion_max_elongation=by_index(elongations, current.lesion_max_elongation, 0.0,
                                                      (vocab.Kind.LESION,)))


def opening_label(value: float | None) -> str:
    """A row's per-organ setting (opening radius, threshold) as the tables and the options write it (None: the
    weights' own per-organ table)."""
    return "default" if value is None else f"{value:g}"


def format_organ_rows(rows: Sequence[dict], key: str = "organ_opening_mm") -> str:
    """Each organ's mean Dice per value of the per-organ setting ``key`` (the first row of each value among
    those with the other per-organ settings the weights' own; give it the rows of one lesion setting,
    :func:`at_lesion_settings`)."""
    per_value = first_row_per_value(rows, key)
    values = list(per_value)
    names = list(next(iter(per_value.values()))["organ_dice"]) if per_value else []
    word = "opening" if key == "organ_opening_mm" else "threshold"
    lines = ["| organ | " + " | ".join(f"{word} {opening_label(v)}" for v in values) + " |",
             "| --- |" + " ---: |" * len(values)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{per_value[v]['organ_dice'].get(name, math.nan):.3f}" for v in values) + " |")
    return "\n".join(lines)


def format_lesion_rows(rows: Sequence[dict]) -> str:
    """Each lesion class's lesions found and false positives per uniform lesion elongation (the first row of
    each value among those with the weights' own per-organ settings; give it the rows of one lesion setting)."""
    per_value = first_row_per_value(rows, "lesion_max_elongation")
    names = sorted({n for r in per_value.values() for n in r["lesion_classes"]}, key=lambda n: vocab.by_name(n).index)
    lines = ["| lesion class | " + " | ".join(f"elongation {opening_label(v)}" for v in per_value) + " |",
             "| --- |" + " ---: |" * len(per_value)]
    for name in names:
        cells = []
        for r in per_value.values():
            d = r["lesion_classes"].get(name, dict(detected=0, total=0, false_positives=0))
            cells.append(f"{d['detected']}/{d['total']} · {d['false_positives']} FP")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mm3_label(min_lesion_mm3: float | None) -> str:
    """A row's minimum lesion volume as the table prints it (None: each class's default)."""
    return "class default" if min_lesion_mm3 is None else f"{min_lesion_mm3:g}"


def format_rows(rows: Sequence[dict]) -> str:
    def num(v, fmt):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = ["| lesion_peak | min_lesion_mm3 | host_enclosure | organ opening (mm) | organ threshold "
             "| lesion threshold | lesion elongation | sensitivity | FP / case | median diameter error (mm) "
             "| mean organ Dice |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['lesion_peak']:.2f} | {mm3_label(r['min_lesion_mm3'])} | {r['host_enclosure']:.2f} "
                     f"| {opening_label(r.get('organ_opening_mm'))} | {opening_label(r.get('organ_threshold'))} "
                     f"| {opening_label(r.get('lesion_threshold'))} | {opening_label(r.get('lesion_max_elongation'))} "
                     f"| {num(r['sensitivity'], '.3f')} "
                     f"({r['detected']}/{r['total']}) | {num(r['fp_per_case'], '.2f')} | "
                     f"{num(r['median_diameter_error_mm'], '.2f')} | {num(r['mean_organ_dice'], '.3f')} |")
    return "\n".join(lines)


def values_or_default(text: str) -> list[float | None]:
    """A comma-separated option's values, "default" read as None (the weights' or the class's own);
    ValueError on anything else that is not a number."""
    return [None if v.strip() == "default" else float(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    from radmesh.model.train import load_weights

    ap = argparse.ArgumentParser(prog="python -m radmesh.model.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="weights file (default: the shipped reference weights)")
    ap.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="validation seeds, 100–999")
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--peaks", default=",".join(map(str, DEFAULT_PEAKS)))
    ap.add_argument("--min-lesion-mm3", default=",".join("default" if v is None else f"{v:g}" for v in DEFAULT_MIN_LESION_MM3),
                    help="minimum lesion volumes, mm³; 'default' = each class's own")
    ap.add_argument("--host-enclosure", default=",".join(f"{v:g}" for v in DEFAULT_HOST_ENCLOSURE),
                    help="shares of a lesion's surrounding ring that must be its host (0 = rule off)")
    ap.add_argument("--organ-opening-mm", default=",".join(opening_label(v) for v in DEFAULT_ORGAN_OPENING_MM),
                    help="organ opening radii, mm, each for every organ; 'default' = the weights' calibration file's table")
    ap.add_argument("--organ-threshold", default=",".join(opening_label(v) for v in DEFAULT_ORGAN_THRESHOLD),
                    help="rule 1 thresholds, each for every organ and vessel; 'default' = the weights' calibration file's table")
    ap.add_argument("--lesion-threshold", default=",".join(opening_label(v) for v in DEFAULT_LESION_THRESHOLD),
                    help="rule 1 thresholds, each for every lesion class; 'default' = the weights' calibration file's")
    ap.add_argument("--lesion-max-elongation", default=",".join(opening_label(v) for v in DEFAULT_LESION_MAX_ELONGATION),
                    help="rule 6's largest lesion elongations (longest / shortest principal axis; 0 = no rule), each "
                         "for every lesion class; 'default' = the weights' calibration file's table; 'grid' = "
                         + ",".join(f"{v:g}" for v in ELONGATION_GRID))
    ap.add_argument("--lesions", default=None,
                    help="lesion classes every phantom must contain, e.g. 28,27,26,32,30,30 (a class n times: "
                         "n lesions); default: the generator's random presence")
    ap.add_argument("--json", default=None, help="write the rows and the recommendation here")
    ap.add_argument("--write-calibration", action="store_true",
                    help="write the recommended values beside the weights (<weights>.calibration.json), "
                         "replacing the file there")
    a = ap.parse_args(argv)
    try:
        seeds = check_validation_seeds(int(s) for s in a.seeds.split(","))
        peaks = [float(v) for v in a.peaks.split(",")]
        mm3 = values_or_default(a.min_lesion_mm3)
        shares = [float(v) for v in a.host_enclosure.split(",")]
        if not all(is_share(v) for v in shares):
            raise ValueError(f"host enclosure shares must be in [0, 1], got {a.host_enclosure}")
        radii = values_or_default(a.organ_opening_mm)
        if not all(v is None or is_opening_mm(v) for v in radii):
            raise ValueError(f"organ opening radii must be millimetres >= 0, got {a.organ_opening_mm}")
        organ_thresholds = values_or_default(a.organ_threshold)
        if not all(v is None or is_threshold(v) for v in organ_thresholds):
            raise ValueError(f"organ thresholds must be probabilities in [0, 1), got {a.organ_threshold}")
        lesion_thresholds = values_or_default(a.lesion_threshold)
        if not all(v is None or is_threshold(v) for v in lesion_thresholds):
            raise ValueError(f"lesion thresholds must be probabilities in [0, 1), got {a.lesion_threshold}")
        elongations = values_or_default(",".join(f"{v:g}" for v in ELONGATION_GRID)
                                        if a.lesion_max_elongation == "grid" else a.lesion_max_elongation)
        if not all(v is None or is_elongation(v) for v in elongations):
            raise ValueError(f"lesion elongations must be ratios >= 1 (0: no rule), got {a.lesion_max_elongation}")
        config = None
        if a.lesions is not None:
            if not all(v.strip().isdigit() for v in a.lesions.split(",")):
                raise ValueError(f"lesions must be vocabulary indices such as 28,27,26, got {a.lesions!r}")
            config = PhantomConfig(lesions=tuple(int(v) for v in a.lesions.split(",")))
            config.validate()
    except (InvalidInputError, ValueError) as e:
        raise SystemExit(f"radmesh calibrate: {e}") from None
    model, meta = load_weights(a.weights or default_weights_path())
    t0 = time.perf_counter()
    cases = []
    for seed in seeds:
        cases.append(cache_case(seed, model, meta, a.overlap, config))
        print(f"seed {seed}: probabilities {cases[-1].probabilities.shape} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = sweep(cases, [int(c) for c in meta["classes"]], peaks, mm3, shares, radii, organ_thresholds,
                 calibration=meta["calibration"], lesion_threshold=lesion_thresholds,
                 lesion_max_elongation=elongations)
    print(format_rows(rows))
    rec = recommend(rows)
    organ_rows = at_lesion_settings(rows, rec)
    openings = thresholds = elongation = None
    if len(radii) > 1:
        print(format_organ_rows(organ_rows, "organ_opening_mm"))
        openings = recommend_openings(organ_rows)
        print("recommended organ openings (mm): " + ", ".join(f"{n} {v:g}" for n, v in openings.items()))
    if len(organ_thresholds) > 1:
        print(format_organ_rows(organ_rows, "organ_threshold"))
        thresholds = recommend_thresholds(organ_rows)
        print("recommended organ thresholds: " + ", ".join(f"{n} {v:g}" for n, v in thresholds.items()))
    if len(elongations) > 1:
        print(format_lesion_rows(organ_rows))
        elongation = recommend_elongations(organ_rows)
        print("recommended lesion elongations (0: no rule): " + ", ".join(f"{n} {v:g}" for n, v in elongation.items()))
    print(f"recommended: lesion_peak {rec['lesion_peak']:g}, min_lesion_mm3 {mm3_label(rec['min_lesion_mm3'])}, "
          f"host_enclosure {rec['host_enclosure']:g}, lesion threshold {opening_label(rec.get('lesion_threshold'))} "
          f"(sensitivity {rec['sensitivity']:.3f}, {rec['fp_per_case']:.2f} FP per case on seeds {seeds})")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(dict(seeds=seeds, weights=str(a.weights or default_weights_path()), overlap=a.overlap,
                           lesions=None if config is None else list(config.lesions), rows=rows, recommended=rec,
                           recommended_organ_opening_mm=openings, recommended_organ_threshold=thresholds,
                           recommended_lesion_max_elongation=elongation,
                           model_version=meta.get("model_version"), pid=os.getpid()), f, indent=1)
    if a.write_calibration:
        weights = a.weights or default_weights_path()
        chosen = recommended_calibration(meta["calibration"], rec["lesion_peak"], openings, thresholds,
                                         rec.get("lesion_threshold"),
                                         [c for c in meta["classes"] if vocab.get(int(c)).is_lesion], elongation)
        how = f"validation phantoms {seeds}: python -m radmesh.model.calibrate {' '.join(argv or sys.argv[1:])}"
        print(f"wrote {write_calibration(weights, chosen, meta.get('model_version', ''), how)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
