"""Choosing the lesion post-processing thresholds on validation phantoms: ``python -m radmesh.model.calibrate``.

The thresholds that decide which predicted lesion components survive post-processing
(:data:`radmesh.model.postprocess.LESION_PEAK`, the minimum peak probability of a
component, and the minimum lesion volume) change the evaluation's sensitivity and
false positives directly, so they must not be chosen on the evaluation phantoms
(seeds 0–19; 0–99 are reserved) and not on training phantoms (seeds ≥ 1000, which the
model has seen). Calibration uses seeds from :data:`VALIDATION_SEEDS` (100–999).

For each validation seed: the phantom (default full-size config, as the evaluation
uses), the production pipeline's model space, body crop and sliding-window
probabilities of every validated class (the weights' in-process PyTorch runner),
computed once and kept as float16. Then for every (lesion_peak, min_lesion_mm3) of
the grid, :func:`radmesh.model.pipeline.labels_on_ct_grid` (the pipeline's own
post-processing and resampling) and :func:`radmesh.model.evaluate.case_metrics`;
:func:`radmesh.model.evaluate.summarise` over the seeds gives one table row.

The recommended setting is the one with the fewest false positives per case among
those whose lesion sensitivity is the best of the grid (ties: the lower thresholds,
which cut less). The table, not the recommendation, is the output to read: with a few
validation cases a difference of one lesion is a large step.

``--organ-opening-mm`` sweeps the organ rule's opening radius
(:data:`radmesh.model.postprocess.ORGAN_OPENING_MM`) the same way: each value is one radius
for every organ, ``default`` the shipped per-organ table. A second table gives each
organ's mean Dice per radius, and the recommended radius of an organ is the one with its
best Dice (ties: the smaller radius, which cuts less). An organ's opening changes its own
mask only (and, through overlaps, barely its neighbours'), so the radii are chosen per organ
from uniform sweeps.
"""

from __future__ import annotations

import argparse
import json
import itertools
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Volume
from radmesh.model.evaluate import case_metrics, default_weights_path, summarise
from radmesh.model.postprocess import HOST_ENCLOSURE
from radmesh.phantom.generator import Phantom, PhantomConfig, generate

VALIDATION_SEEDS = range(100, 1000)
DEFAULT_SEEDS = (100, 101, 102, 103)
DEFAULT_PEAKS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
# None: each class's default (radmesh.model.postprocess.default_min_lesion_mm3). No higher than
# 100 mm³: a lesion 10 mm across (the sensitivity bar's size) can be as flat as 10 × 7 × 5 mm,
# 192 mm³, and must survive being segmented at half its volume.
DEFAULT_MIN_LESION_MM3: tuple[float | None, ...] = (None, 20.0, 50.0, 100.0)
DEFAULT_HOST_ENCLOSURE = (0.0, 0.5, 0.6, 0.7)
# None: the shipped per-organ radii (radmesh.model.postprocess.ORGAN_OPENING_MM).
DEFAULT_ORGAN_OPENING_MM: tuple[float | None, ...] = (None,)


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
          organ_opening_mm: Sequence[float | None] = DEFAULT_ORGAN_OPENING_MM) -> list[dict]:
    """One summary row per (lesion_peak, min_lesion_mm3, host_enclosure, organ_opening_mm); a None minimum
    is each class's default, a None opening the shipped per-organ radii, a number that radius for every organ."""
    from radmesh.model.pipeline import labels_on_ct_grid

    organs = [c for c in classes if vocab.get(c).kind is vocab.Kind.ORGAN]
    rows = []
    for peak, mm3, share, radius in itertools.product(peaks, min_lesion_mm3, host_enclosure, organ_opening_mm):
        per_case = []
        openings = None if radius is None else {c: float(radius) for c in organs}
        for case in cases:
            labels, _ = labels_on_ct_grid(case.probabilities.astype(np.float32), classes, case.model_image,
                                          case.box, case.body, case.phantom.ct.geometry,
                                          lesion_peak=float(peak), host_enclosure=float(share),
                                          min_lesion_mm3=None if mm3 is None else float(mm3),
                                          organ_opening_mm=openings)
            per_case.append(case_metrics(case.phantom.ct, case.phantom.labels, case.phantom.truth, labels))
        s = summarise(per_case)
        rows.append(dict(lesion_peak=float(peak), min_lesion_mm3=None if mm3 is None else float(mm3),
                         host_enclosure=float(share), organ_opening_mm=None if radius is None else float(radius),
                         sensitivity=s["lesions"]["sensitivity"],
                         detected=s["lesions"]["detected"],
                         total=s["lesions"]["total"], fp_per_case=s["lesions"]["fp_per_case"],
                         median_diameter_error_mm=s["lesions"]["median_abs_diameter_error_mm"],
                         mean_organ_dice=s["mean_organ_dice"],
                         organ_dice={name: v["mean"] for name, v in s["organs"].items()}))
    return rows


def recommend(rows: Sequence[dict]) -> dict:
    """The fewest false positives among the rows with the best sensitivity (ties: lower thresholds), among
    the rows with the shipped organ openings when the sweep has any (the lesion thresholds are chosen
    for the organ masks that ship)."""
    shipped = [r for r in rows if r.get("organ_opening_mm") is None]
    rows = shipped or list(rows)
    best = max(r["sensitivity"] for r in rows)
    top = [r for r in rows if r["sensitivity"] >= best - 1e-12]
    return min(top, key=lambda r: (r["fp_per_case"], r["lesion_peak"], r["min_lesion_mm3"] or 0.0,
                                   r["host_enclosure"]))


def recommend_openings(rows: Sequence[dict]) -> dict[str, float]:
    """Organ name → the uniform opening radius (mm) of the rows with its best mean Dice (ties: the
    smaller radius); rows with the shipped table (None) are not candidates, and vessels (never
    opened) are not listed."""
    uniform = sorted((r for r in rows if r.get("organ_opening_mm") is not None), key=lambda r: r["organ_opening_mm"])
    best: dict[str, tuple[float, float]] = {}
    for r in uniform:
        for name, d in r["organ_dice"].items():
            if vocab.by_name(name).kind is not vocab.Kind.ORGAN or math.isnan(d):
                continue
            if name not in best or d > best[name][1] + 1e-12:      # strictly better: ties keep the smaller radius
                best[name] = (r["organ_opening_mm"], d)
    return {name: radius for name, (radius, _) in best.items()}


def opening_label(radius_mm: float | None) -> str:
    """A row's organ opening as the tables and --organ-opening-mm write it (None: the shipped per-organ table)."""
    return "default" if radius_mm is None else f"{radius_mm:g}"


def format_organ_rows(rows: Sequence[dict]) -> str:
    """Each organ's mean Dice per organ opening radius (the first row of each radius; Dice does not
    depend on the lesion thresholds except through the lesions' own voxels)."""
    per_radius: dict[float | None, dict] = {}
    for r in rows:
        per_radius.setdefault(r.get("organ_opening_mm"), r)
    radii = list(per_radius)
    names = list(next(iter(per_radius.values()))["organ_dice"]) if per_radius else []
    lines = ["| organ | " + " | ".join(f"opening {opening_label(v)}" for v in radii) + " |",
             "| --- |" + " ---: |" * len(radii)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{per_radius[v]['organ_dice'][name]:.3f}" for v in radii) + " |")
    return "\n".join(lines)


def mm3_label(min_lesion_mm3: float | None) -> str:
    """A row's minimum lesion volume as the table prints it (None: each class's default)."""
    return "class default" if min_lesion_mm3 is None else f"{min_lesion_mm3:g}"


def format_rows(rows: Sequence[dict]) -> str:
    def num(v, fmt):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = ["| lesion_peak | min_lesion_mm3 | host_enclosure | organ opening (mm) | sensitivity | FP / case "
             "| median diameter error (mm) | mean organ Dice |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['lesion_peak']:.2f} | {mm3_label(r['min_lesion_mm3'])} | {r['host_enclosure']:.2f} "
                     f"| {opening_label(r.get('organ_opening_mm'))} "
                     f"| {num(r['sensitivity'], '.3f')} "
                     f"({r['detected']}/{r['total']}) | {num(r['fp_per_case'], '.2f')} | "
                     f"{num(r['median_diameter_error_mm'], '.2f')} | {num(r['mean_organ_dice'], '.3f')} |")
    return "\n".join(lines)


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
                    help="organ opening radii, mm, each for every organ; 'default' = the shipped per-organ table")
    ap.add_argument("--json", default=None, help="write the rows and the recommendation here")
    a = ap.parse_args(argv)
    try:
        seeds = check_validation_seeds(int(s) for s in a.seeds.split(","))
        peaks = [float(v) for v in a.peaks.split(",")]
        mm3 = [None if v.strip() == "default" else float(v) for v in a.min_lesion_mm3.split(",")]
        shares = [float(v) for v in a.host_enclosure.split(",")]
        if not all(0.0 <= v <= 1.0 for v in shares):
            raise ValueError(f"host enclosure shares must be in [0, 1], got {a.host_enclosure}")
        radii = [None if v.strip() == "default" else float(v) for v in a.organ_opening_mm.split(",")]
        if not all(v is None or (math.isfinite(v) and v >= 0) for v in radii):
            raise ValueError(f"organ opening radii must be millimetres >= 0, got {a.organ_opening_mm}")
    except (InvalidInputError, ValueError) as e:
        raise SystemExit(f"radmesh calibrate: {e}") from None
    model, meta = load_weights(a.weights or default_weights_path())
    t0 = time.perf_counter()
    cases = []
    for seed in seeds:
        cases.append(cache_case(seed, model, meta, a.overlap))
        print(f"seed {seed}: probabilities {cases[-1].probabilities.shape} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = sweep(cases, [int(c) for c in meta["classes"]], peaks, mm3, shares, radii)
    print(format_rows(rows))
    openings = None
    if len(radii) > 1:
        print(format_organ_rows(rows))
        openings = recommend_openings(rows)
        print("recommended organ openings (mm): " + ", ".join(f"{n} {v:g}" for n, v in openings.items()))
    rec = recommend(rows)
    print(f"recommended: lesion_peak {rec['lesion_peak']:g}, min_lesion_mm3 {mm3_label(rec['min_lesion_mm3'])}, "
          f"host_enclosure {rec['host_enclosure']:g} "
          f"(sensitivity {rec['sensitivity']:.3f}, {rec['fp_per_case']:.2f} FP per case on seeds {seeds})")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(dict(seeds=seeds, weights=str(a.weights or default_weights_path()), overlap=a.overlap,
                           rows=rows, recommended=rec, recommended_organ_opening_mm=openings,
                           model_version=meta.get("model_version"), pid=os.getpid()), f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
