"""Calibration of the lesion post-processing thresholds (radmesh.model.calibrate), without a model.

The sweep is run on cached "probabilities" made from a phantom's own truth, so its
expected result is known: every lesion found with no false positive at any
threshold, until the minimum volume exceeds the smallest lesion.
"""

from __future__ import annotations

import numpy as np
import pytest

from radmesh.common import vocabulary as V
from radmesh.common.errors import InvalidInputError
from radmesh.model.calibrate import CachedCase, at_lesion_settings, check_validation_seeds, format_organ_rows, main, \
    recommend, recommend_openings, recommend_thresholds, sweep
from radmesh.model.data import PHANTOM_CLASSES
from radmesh.model.preprocess import body_crop, labels_to_model_space, to_model_space
from radmesh.phantom.generator import PhantomConfig, generate


def test_only_validation_seeds_are_accepted():
    assert check_validation_seeds([100, 999]) == [100, 999]
    for seeds in ([0], [19, 100], [1000], []):
        with pytest.raises(InvalidInputError):
            check_validation_seeds(seeds)


def test_recommend_prefers_sensitivity_then_fewest_false_positives_then_lower_thresholds():
    rows = [dict(lesion_peak=0.5, min_lesion_mm3=20.0, host_enclosure=0.0, sensitivity=1.0, fp_per_case=9.0),
            dict(lesion_peak=0.9, min_lesion_mm3=20.0, host_enclosure=0.6, sensitivity=1.0, fp_per_case=2.0),
            dict(lesion_peak=0.95, min_lesion_mm3=20.0, host_enclosure=0.0, sensitivity=1.0, fp_per_case=2.0),
            dict(lesion_peak=0.95, min_lesion_mm3=200.0, host_enclosure=0.0, sensitivity=0.5, fp_per_case=0.0),
            dict(lesion_peak=0.9, min_lesion_mm3=20.0, host_enclosure=0.7, sensitivity=1.0, fp_per_case=2.0)]
    assert recommend(rows) is rows[1]
    # a lesion threshold is one more lesion setting: fewest false positives, then the weights' own, then lower
    les = [dict(rows[1], lesion_threshold=t, fp_per_case=fp) for t, fp in ((0.9, 1.0), (0.7, 1.0), (None, 2.0))]
    assert recommend(les) is les[1]
    assert recommend(les[:2] + [dict(les[2], fp_per_case=1.0)])["lesion_threshold"] is None
    # rows that sweep a per-class setting are not candidates when the weights' own are in the sweep
    el = [dict(rows[1], lesion_max_elongation=2.5, fp_per_case=0.0), dict(rows[1], lesion_max_elongation=None)]
    assert recommend(el) is el[1]


def test_each_lesion_class_gets_the_elongation_that_finds_most_then_leaves_fewest_false_positives():
    from radmesh.model.calibrate import recommend_elongations

    def row(v, liver, kidney):
        return dict(lesion_max_elongation=v, organ_opening_mm=None, organ_threshold=None,
                    lesion_classes={"Liver Tumor": dict(zip(("detected", "total", "false_positives"), liver)),
                                    "Kidney Tumor": dict(zip(("detected", "total", "false_positives"), kidney))})
    rows = [row(0.0, (5, 5, 4), (4, 4, 0)), row(3.0, (5, 5, 2), (4, 4, 0)), row(2.5, (5, 5, 1), (3, 4, 0)),
            row(2.0, (4, 5, 0), (3, 4, 0)), row(None, (5, 5, 0), (4, 4, 0))]   # the weights' own: no candidate
    # liver: 2.5 leaves fewest false positives of those that find all 5; kidney: nothing to gain, so no rule
    assert recommend_elongations(rows) == {"Liver Tumor": 2.5, "Kidney Tumor": 0.0}
    # among equals the largest value, which cuts least
    assert recommend_elongations([row(2.5, (5, 5, 1), (4, 4, 0)), row(3.0, (5, 5, 1), (4, 4, 0))]) == \
        {"Liver Tumor": 3.0, "Kidney Tumor": 3.0}


def test_lesion_thresholds_are_recommended_for_the_shipped_organ_openings():
    rows = [dict(lesion_peak=0.5, min_lesion_mm3=20.0, host_enclosure=0.0, organ_opening_mm=3.0,
                 sensitivity=1.0, fp_per_case=0.0),
            dict(lesion_peak=0.9, min_lesion_mm3=20.0, host_enclosure=0.0, organ_opening_mm=None,
                 sensitivity=1.0, fp_per_case=1.0)]
    assert recommend(rows) is rows[1]


def test_each_organ_gets_the_opening_with_its_best_dice_the_smaller_among_equals():
    rows = [dict(organ_opening_mm=r, organ_dice=d) for r, d in (
        (0.0, {"Stomach": 0.60, "Liver": 0.93, "Gall Bladder": 0.76, "Aorta": 0.91}),
        (4.5, {"Stomach": 0.68, "Liver": 0.95, "Gall Bladder": 0.70}),
        (9.0, {"Stomach": 0.72, "Liver": 0.95, "Gall Bladder": float("nan")}),
        (None, {"Stomach": 0.99, "Liver": 0.99, "Gall Bladder": 0.99}))]    # the shipped table is no candidate
    assert recommend_openings(rows) == {"Stomach": 9.0, "Liver": 4.5, "Gall Bladder": 0.0}


def test_each_organ_and_vessel_gets_the_threshold_with_its_best_dice_the_nearest_to_one_half_among_near_equals():
    rows = [dict(organ_threshold=t, organ_opening_mm=None, organ_dice=d) for t, d in (
        (0.3, {"Gall Bladder": 0.80, "Liver": 0.95, "Aorta": 0.90, "Spleen": 0.944, "Liver Tumor": 0.99}),
        (0.4, {"Gall Bladder": 0.82, "Liver": 0.94, "Aorta": 0.91, "Spleen": 0.940, "Liver Tumor": 0.10}),
        (0.6, {"Gall Bladder": 0.79, "Liver": 0.95, "Aorta": 0.91, "Spleen": 0.927, "Liver Tumor": 0.10}),
        (None, {"Gall Bladder": 0.99, "Liver": 0.99, "Aorta": 0.99}))]     # the shipped table is no candidate
    rows.append(dict(organ_threshold=0.7, organ_opening_mm=3.0, organ_dice={"Liver": 1.0}))   # another opening: no
    assert recommend_thresholds(rows) == {"Gall Bladder": 0.4, "Liver": 0.6, "Aorta": 0.4, "Spleen": 0.4}   # 0.004 is noise
    table = format_organ_rows(rows, "organ_threshold")
    assert "| organ | threshold 0.3 | threshold 0.4 | threshold 0.6 | threshold default |" in table
    assert "| Gall Bladder | 0.800 | 0.820 | 0.790 | 0.990 |" in table


def test_organ_settings_are_chosen_at_the_recommended_lesion_settings():
    """A sweep of organ thresholds together with lesion thresholds: the organ rows at another lesion threshold
    (here one that drops lesion voxels back into the liver) must not count in the organ's choice."""
    lesion = dict(lesion_peak=0.99, min_lesion_mm3=None, host_enclosure=0.7, sensitivity=1.0)
    rows = [dict(lesion, lesion_threshold=0.8, fp_per_case=0.0, organ_threshold=None, organ_opening_mm=None,
                 organ_dice={"Liver": 0.95}),
            dict(lesion, lesion_threshold=0.5, fp_per_case=1.0, organ_threshold=None, organ_opening_mm=None,
                 organ_dice={"Liver": 0.95})]
    for les, thr, d in ((0.8, 0.5, 0.950), (0.8, 0.8, 0.940), (0.5, 0.5, 0.930), (0.5, 0.8, 0.990)):
        rows.append(dict(lesion, lesion_threshold=les, fp_per_case=0.0 if les == 0.8 else 1.0, organ_threshold=thr,
                         organ_opening_mm=None, organ_dice={"Liver": d}))
    chosen = recommend(rows)
    assert chosen["lesion_threshold"] == 0.8
    assert recommend_thresholds(rows) == {"Liver": 0.8}                         # mixed: the other lesion row wins
    picked = at_lesion_settings(rows, chosen)
    assert {r["lesion_threshold"] for r in picked} == {0.8} and len(picked) == 3
    assert recommend_thresholds(picked) == {"Liver": 0.5}
    assert "| Liver | 0.950 | 0.950 | 0.940 |" in format_organ_rows(picked, "organ_threshold")


def test_a_run_writes_what_it_recommends_and_keeps_what_it_did_not_sweep():
    from radmesh.model.calibrate import recommended_calibration
    from radmesh.model.calibration import Calibration

    current = Calibration(class_threshold={V.LIVER: 0.8, V.LIVER_TUMOR: 0.7}, organ_opening_mm={V.STOMACH: 9.0},
                          lesion_peak=0.99, lesion_max_elongation={V.LIVER_TUMOR: 3.0})
    kept = recommended_calibration(current, 0.95, openings=None, thresholds=None)
    assert (dict(kept.class_threshold), dict(kept.organ_opening_mm), kept.lesion_peak, kept.lesion_max_elongation) == \
        ({V.LIVER: 0.8, V.LIVER_TUMOR: 0.7}, {V.STOMACH: 9.0}, 0.95, {V.LIVER_TUMOR: 3.0})
    # an elongation of 0 is no rule: not written
    new_el = recommended_calibration(current, 0.95, None, None, elongations={"Liver Tumor": 0.0, "Pancreas Tumor": 2.5})
    assert dict(new_el.lesion_max_elongation) == {V.PANCREAS_TUMOR: 2.5}
    new = recommended_calibration(current, 0.99, openings={"Stomach": 0.0, "Liver": 4.5},
                                  thresholds={"Liver": 0.5, "Aorta": 0.9}, lesion_threshold=0.8,
                                  lesions=[V.LIVER_TUMOR, V.KIDNEY_CYST])
    # an opening of 0 and a threshold of 0.5 are what an unlisted organ gets: not written
    assert dict(new.organ_opening_mm) == {V.LIVER: 4.5}
    assert dict(new.class_threshold) == {V.AORTA: 0.9, V.LIVER_TUMOR: 0.8, V.KIDNEY_CYST: 0.8}
    # organ thresholds swept, lesions not: the lesions keep theirs
    organs_only = recommended_calibration(current, 0.99, openings=None, thresholds={"Liver": 0.6})
    assert dict(organs_only.class_threshold) == {V.LIVER: 0.6, V.LIVER_TUMOR: 0.7}


def test_sweep_on_truth_probabilities_finds_every_lesion_without_false_positives():
    ph = generate(100, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(3.0, 3.0, 4.0), slices=40, oblique=False,
                                     lesions=(V.LIVER_TUMOR,)))
    image = to_model_space(ph.ct, 3.0)
    labels = labels_to_model_space(ph.labels, image.geometry).array
    box, body = body_crop(ph.ct, image.geometry)
    classes = list(PHANTOM_CLASSES)
    probs = np.stack([(labels[box] == c) * 0.95 for c in classes]).astype(np.float16)
    liver = classes.index(V.LIVER)
    probs[liver] = np.maximum(probs[liver], (labels[box] == V.LIVER_TUMOR) * 0.95)  # organs include their lesions
    case = CachedCase(ph, image, box, body, probs)
    rows = sweep([case], classes, peaks=(0.5, 0.99), min_lesion_mm3=(20.0,))
    assert [r["lesion_peak"] for r in rows] == [0.5, 0.99]
    default, = sweep([case], classes, peaks=(0.5,), min_lesion_mm3=(None,))   # each class's own minimum
    assert default["min_lesion_mm3"] is None and default["sensitivity"] == 1.0 and default["fp_per_case"] == 0
    assert rows[0]["total"] >= 1 and rows[0]["sensitivity"] == 1.0 and rows[0]["fp_per_case"] == 0
    assert rows[0]["mean_organ_dice"] > 0.8
    assert rows[1]["detected"] == 0          # nothing reaches a peak of 0.99
    # a lesion inside its organ passes the enclosure rule at any share
    shares = sweep([case], classes, peaks=(0.5,), min_lesion_mm3=(20.0,), host_enclosure=(0.0, 0.9))
    assert [r["host_enclosure"] for r in shares] == [0.0, 0.9] and all(r["sensitivity"] == 1.0 for r in shares)
    # organ openings: one row per radius, with every organ's Dice; the truth's organs survive a 3 mm opening
    radii = sweep([case], classes, peaks=(0.5,), min_lesion_mm3=(20.0,), organ_opening_mm=(0.0, 3.0, None))
    assert [r["organ_opening_mm"] for r in radii] == [0.0, 3.0, None]
    assert V.get(V.LIVER).name in radii[1]["organ_dice"]
    assert radii[1]["organ_dice"][V.get(V.LIVER).name] > 0.9
    # organ thresholds: truth at 0.95 is kept below 0.95 and gone above it
    thresholds = sweep([case], classes, peaks=(0.5,), min_lesion_mm3=(20.0,), organ_threshold=(0.3, 0.96))
    assert [r["organ_threshold"] for r in thresholds] == [0.3, 0.96]
    assert thresholds[0]["organ_dice"][V.get(V.LIVER).name] > 0.9
    assert thresholds[1]["organ_dice"][V.get(V.LIVER).name] == 0.0
    # lesion thresholds: the truth's lesion at 0.95 survives 0.9 and is gone at 0.96 (its voxels go to the
    # liver, which claims them too); no other organ moves
    lesion = sweep([case], classes, peaks=(0.5,), min_lesion_mm3=(20.0,), lesion_threshold=(0.9, 0.96))
    assert [r["lesion_threshold"] for r in lesion] == [0.9, 0.96]
    assert lesion[0]["sensitivity"] == 1.0 and lesion[1]["detected"] == 0
    liver = V.get(V.LIVER).name
    assert {k: v for k, v in lesion[0]["organ_dice"].items() if k != liver} == \
        {k: v for k, v in lesion[1]["organ_dice"].items() if k != liver}
    # lesion elongations: the truth's lesions (at most 1.9 times as long as thick) pass 2.5 and none passes 1;
    # a false "tumour" drawn along a strand of the liver is a false positive of its class until 2.5 removes it
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(labels[box] == V.LIVER)      # voxels to the nearest non-liver (or tumour)
    z, y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    assert depth[z, y, x] >= 8
    strand = np.s_[z - 1:z + 1, y - 1:y + 1, x - 6:x + 6]                # 2 × 2 × 12 voxels, deep in the liver
    probs[classes.index(V.LIVER_TUMOR)][strand] = 0.95
    case = CachedCase(ph, image, box, body, probs)
    elong = sweep([case], classes, peaks=(0.5,), min_lesion_mm3=(20.0,), lesion_max_elongation=(0.0, 2.5, 1.0))
    assert [r["lesion_max_elongation"] for r in elong] == [0.0, 2.5, 1.0]
    assert [r["lesion_classes"][V.get(V.LIVER_TUMOR).name]["false_positives"] for r in elong] == [1, 0, 0]
    assert elong[0]["sensitivity"] == elong[1]["sensitivity"] == 1.0 and elong[2]["detected"] == 0


def test_cli_refuses_a_negative_organ_opening_in_one_line_before_loading_a_model():
    with pytest.raises(SystemExit, match="organ opening radii must be millimetres >= 0, got -1"):
        main(["--organ-opening-mm", "-1"])


def test_cli_refuses_an_organ_threshold_outside_a_probability_in_one_line():
    with pytest.raises(SystemExit, match=r"radmesh calibrate: organ thresholds must be probabilities in \[0, 1\), got 0.4,1"):
        main(["--organ-threshold", "0.4,1"])


def test_cli_refuses_a_lesion_threshold_outside_a_probability_in_one_line():
    with pytest.raises(SystemExit, match=r"radmesh calibrate: lesion thresholds must be probabilities in \[0, 1\), got 1.5"):
        main(["--lesion-threshold", "1.5"])


def test_cli_refuses_a_lesion_elongation_below_one_in_one_line():
    with pytest.raises(SystemExit, match=r"radmesh calibrate: lesion elongations must be ratios >= 1 \(0: no rule\), got 3,0.5"):
        main(["--lesion-max-elongation", "3,0.5"])


def test_cli_refuses_a_lesion_class_the_phantoms_cannot_hold_in_one_line():
    with pytest.raises(SystemExit, match=r"radmesh calibrate: lesions must be drawn from .*got \[6\]"):
        main(["--lesions", "27,6"])
    with pytest.raises(SystemExit, match="radmesh calibrate: lesions must be vocabulary indices such as 28,27,26, got 'liver'"):
        main(["--lesions", "liver"])
