"""The segmentation pipeline (radmesh.model.pipeline) and its post-processing, without trained weights.

Geometry and progress are checked with a stand-in runner whose logits are a function
of intensity alone, so the expected label map can be computed directly on the CT's
own grid. The post-processing rules are checked one by one on synthetic
probability maps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.utils import dense_patch_slices
from scipy import ndimage

from radmesh.common import vocabulary as V
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.model.postprocess import absorb_lesion_fragments, lesion_groups, midline, postprocess
from radmesh.model.preprocess import FAST_SPACING_MM, HU_WINDOW, to_model_space
from radmesh.model.pipeline import (check_classes, class_embeddings, class_table_from_meta, segment, window_count)
from radmesh.phantom.generator import PhantomConfig, generate

E = 16
TABLE = np.random.default_rng(0).standard_normal((V.NUM_CLASSES, E)).astype(np.float32)
BRIGHT_HU = 100.0     # contrast-enhanced organs, vessels and bone


class ThresholdRunner:
    """Stand-in model: class k's logit is 40 × (windowed intensity − t_k) (t = BRIGHT_HU for all)."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def __call__(self, windows: np.ndarray, emb: np.ndarray) -> np.ndarray:
        assert windows.dtype == np.float32 and windows.shape[1:] == (1, 96, 96, 96)
        assert emb.dtype == np.float32 and emb.shape[1] == E
        self.calls.append((windows.shape[0], emb.shape[0]))
        lo, hi = HU_WINDOW
        t = (BRIGHT_HU - lo) / (hi - lo)
        return np.repeat(40.0 * (windows - t), emb.shape[0], axis=1).astype(np.float32)


def _largest(mask: np.ndarray) -> np.ndarray:
    comps, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    return comps == int(np.argmax(sizes))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def anisotropic():
    return generate(11, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(3.0, 3.0, 5.0), slices=36, oblique=False))


@pytest.fixture(scope="module")
def oblique():
    return generate(12, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(3.2, 3.2, 4.0), slices=44, oblique=True))


# ---- geometry, progress, modes ---------------------------------------------------------------

@pytest.mark.parametrize("case", ["anisotropic", "oblique"])
def test_label_map_is_on_the_input_grid_and_matches_the_ct(case, request):
    ph = request.getfixturevalue(case)
    assert ph.ct.geometry.is_oblique == (case == "oblique")
    res = segment(ph.ct, [V.LIVER], ThresholdRunner(), TABLE, spacing_mm=FAST_SPACING_MM)
    assert res.labels.geometry == ph.ct.geometry
    assert res.labels.array.dtype == np.uint8 and res.labels.array.shape == ph.ct.array.shape
    assert set(np.unique(res.labels.array)) <= {0, V.LIVER}
    expected = _largest(ph.ct.array > BRIGHT_HU)      # the same rule computed on the CT's own grid
    got = res.labels.array == V.LIVER
    assert _dice(got, expected) > 0.85
    assert res.voxel_counts[V.LIVER] == np.count_nonzero(got)
    assert res.volumes_ml[V.LIVER] == pytest.approx(np.count_nonzero(got) * ph.ct.geometry.voxel_volume_mm3 / 1000)
    assert set(res.timings_s) == {"preprocess", "inference", "postprocess", "resample", "total"}


def test_progress_events_are_in_order_and_complete(anisotropic):
    events: list[tuple[int, int]] = []
    runner = ThresholdRunner()
    res = segment(anisotropic.ct, [V.LIVER, V.AORTA], runner, TABLE, sw_batch_size=3, overlap=0.5,
                  progress=lambda d, t: events.append((d, t)))
    total = res.windows
    assert total == sum(b for b, _ in runner.calls) and total > 1
    assert events[0] == (0, total) and events[-1] == (total, total)
    assert all(t == total for _, t in events)
    done = [d for d, _ in events]
    assert done == sorted(set(done))                      # strictly increasing
    assert len(events) == 1 + -(-total // 3)              # one event per runner call
    assert all(b <= 3 and k == 2 for b, k in runner.calls)


def test_runner_batch_limit_and_uncropped_tiling(anisotropic):
    runner = ThresholdRunner()
    runner.max_batch_size = 1
    res = segment(anisotropic.ct, [V.LIVER], runner, TABLE, sw_batch_size=4, crop_to_body=False)
    assert {b for b, _ in runner.calls} == {1}
    assert res.windows == len(runner.calls) == window_count(res.model_grid.shape_zyx, 0.5)
    assert res.body_box_zyx == tuple((0, n) for n in res.model_grid.shape_zyx)
    cropped = segment(anisotropic.ct, [V.LIVER], ThresholdRunner(), TABLE)
    assert cropped.windows <= res.windows
    assert np.prod([b - a for a, b in cropped.body_box_zyx]) < np.prod(res.model_grid.shape_zyx)
    assert _dice(cropped.labels.array > 0, res.labels.array > 0) > 0.97   # an intensity model: tiling-blind


def test_batch_statistics_models_are_run_one_window_at_a_time():
    from radmesh.model.backbones import BatchStatNorm3d
    from radmesh.model.network import build_model
    from radmesh.model.pipeline import TorchRunner, batch_independent

    assert batch_independent(build_model("unet_compact", embed_dim=E))
    published_like = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), BatchStatNorm3d(4)).eval()
    assert not batch_independent(published_like)
    assert TorchRunner(published_like).max_batch_size == 1


def test_fast_mode_uses_3mm_and_fewer_windows(anisotropic):
    fast = segment(anisotropic.ct, [V.LIVER], ThresholdRunner(), TABLE, spacing_mm=FAST_SPACING_MM)
    full = segment(anisotropic.ct, [V.LIVER], ThresholdRunner(), TABLE, overlap=0.25)
    assert fast.model_grid.spacing_xyz_mm == (3.0, 3.0, 3.0) and full.model_grid.spacing_xyz_mm == (1.5, 1.5, 1.5)
    assert fast.windows < full.windows
    assert fast.labels.geometry == full.labels.geometry == anisotropic.ct.geometry
    assert _dice(fast.labels.array > 0, full.labels.array > 0) > 0.85


def test_constant_blending_and_overlap_options(anisotropic):
    res = segment(anisotropic.ct, [V.LIVER], ThresholdRunner(), TABLE, spacing_mm=FAST_SPACING_MM,
                  overlap=0.25, mode="constant", sw_batch_size=1)
    assert res.voxel_counts[V.LIVER] > 0
    with pytest.raises(InvalidInputError, match="mode"):
        segment(anisotropic.ct, [V.LIVER], ThresholdRunner(), TABLE, mode="median")
    with pytest.raises(InvalidInputError, match="overlap"):
        segment(anisotropic.ct, [V.LIVER], ThresholdRunner(), TABLE, overlap=1.0)


def test_window_count_matches_monai():
    rng = np.random.default_rng(1)
    for _ in range(30):
        shape = tuple(int(s) for s in rng.integers(20, 300, size=3))
        overlap = float(rng.choice([0.0, 0.25, 0.5, 0.75]))
        padded = tuple(max(s, 96) for s in shape)
        interval = tuple(96 if s == 96 else max(1, int(96 * (1 - overlap))) for s in padded)
        assert window_count(shape, overlap) == len(dense_patch_slices(padded, (96, 96, 96), interval))


# ---- classes and embeddings -------------------------------------------------------------------

def test_a_class_outside_the_validated_list_is_a_failed_precondition_naming_it():
    validated = [1, 2, 3, 6, 11, 28]
    assert check_classes([28, 11, 28], validated) == (28, 11)
    with pytest.raises(FailedPreconditionError, match="Colon"):
        check_classes([6, V.COLON], validated)
    with pytest.raises(InvalidInputError):
        check_classes([99], validated)
    with pytest.raises(InvalidInputError):
        check_classes([], validated)


def test_segment_refuses_unvalidated_classes_before_running_the_model(anisotropic):
    runner = ThresholdRunner()
    with pytest.raises(FailedPreconditionError, match="Prostate"):
        segment(anisotropic.ct, [V.LIVER, V.PROSTATE], runner, TABLE, validated_classes=[V.LIVER])
    assert runner.calls == []


def test_class_embeddings_from_a_mapping_an_array_and_meta():
    table = {6: np.ones(E), 28: np.zeros(E)}
    assert class_embeddings([28, 6], table).tolist() == [[0.0] * E, [1.0] * E]
    assert np.array_equal(class_embeddings([3, 1], TABLE), TABLE[[2, 0]])
    with pytest.raises(FailedPreconditionError, match="Spleen"):
        class_embeddings([1], table)
    with pytest.raises(InvalidInputError):
        class_embeddings([1], TABLE[:5])
    meta = {"classes": [6, 28], "class_embedding": np.stack([np.ones(E), np.zeros(E)])}
    assert np.array_equal(class_embeddings([6], class_table_from_meta(meta)), np.ones((1, E)))


# ---- post-processing, rule by rule --------------------------------------------------------------

def _probs(shape, *blobs):
    """(K, ...) probabilities: each blob is (class position k, slices, probability)."""
    k = 1 + max(b[0] for b in blobs)
    p = np.zeros((k, *shape), np.float32)
    for i, sl, v in blobs:
        p[i][sl] = v
    return p


S = np.s_
NOPEAK = dict(min_lesion_mm3=0, lesion_peak=0.5)   # lesion size and peak rules off


def test_threshold_is_strictly_above_one_half():
    p = _probs((10, 10, 10), (0, S[1:5, 1:5, 1:5], 0.5), (0, S[6:9, 6:9, 6:9], 0.51))
    out = postprocess(p, [V.SPLEEN], 1.0)
    assert out[7, 7, 7] == V.SPLEEN and out[2, 2, 2] == 0


def test_organs_keep_their_most_confident_component_the_largest_among_equals():
    p = _probs((20, 20, 20), (0, S[1:8, 1:8, 1:8], 0.95), (0, S[12:15, 12:15, 12:15], 0.99))
    out = postprocess(p, [V.LIVER], 1.0)
    assert np.count_nonzero(out == V.LIVER) == 7 ** 3 and out[13, 13, 13] == 0
    # a bigger look-alike the model is unsure of loses to the smaller organ it is sure of
    p[0][1:8, 1:8, 1:8] = 0.7
    out = postprocess(p, [V.GALL_BLADDER], 1.0)
    assert np.count_nonzero(out == V.GALL_BLADDER) == 3 ** 3 and out[4, 4, 4] == 0


def test_an_organ_opening_cuts_a_look_alike_joined_through_a_narrow_neck():
    p = _probs((30, 30, 40), (0, S[5:20, 5:20, 5:20], 0.95),      # the pancreas, 15 mm thick
               (0, S[11:14, 11:14, 20:24], 0.8),                  # a 3 mm neck of bowel touching it
               (0, S[8:17, 8:17, 24:36], 0.8))                    # the bowel loop behind the neck, 9 mm thick
    out = postprocess(p, [V.PANCREAS], 1.0, organ_opening_mm={V.PANCREAS: 3.0})
    assert np.count_nonzero(out[5:20, 5:20, 5:20] == V.PANCREAS) == 15 ** 3   # corners grow back
    assert out[12, 12, 30] == 0 and out[12, 12, 20] == V.PANCREAS             # the loop lost, the neck's root kept
    plain = postprocess(p, [V.PANCREAS], 1.0, organ_opening_mm={})
    assert plain[12, 12, 30] == V.PANCREAS                                      # one 26-connected piece without it
    # an organ thinner than the opening everywhere keeps the plain rule rather than vanishing
    thin = _probs((20, 20, 20), (0, S[2:4, 2:18, 2:18], 0.95))
    assert np.count_nonzero(postprocess(thin, [V.PANCREAS], 1.0, organ_opening_mm={V.PANCREAS: 3.0})) == 2 * 16 * 16
    with pytest.raises(InvalidInputError, match="organ opening"):
        postprocess(p, [V.PANCREAS], 1.0, organ_opening_mm={V.PANCREAS: -1.0})


def test_a_class_threshold_moves_only_its_own_class():
    p = _probs((20, 20, 20), (0, S[2:10, 2:10, 2:10], 0.45), (1, S[12:18, 12:18, 12:18], 0.45))
    plain = postprocess(p, [V.GALL_BLADDER, V.AORTA], 1.0, class_threshold={})
    assert not plain.any()                                                      # 0.45 is under 0.5 for both
    out = postprocess(p, [V.GALL_BLADDER, V.AORTA], 1.0, class_threshold={V.GALL_BLADDER: 0.4})
    assert np.count_nonzero(out == V.GALL_BLADDER) == 8 ** 3 and not (out == V.AORTA).any()
    with pytest.raises(InvalidInputError, match="thresholds must be probabilities"):
        postprocess(p, [V.GALL_BLADDER, V.AORTA], 1.0, class_threshold={V.AORTA: 1.0})


def test_vessels_keep_every_component_above_the_size():
    p = _probs((30, 30, 30), (0, S[1:6, 1:6, 1:6], 0.9), (0, S[10:15, 10:15, 10:15], 0.9),
               (0, S[25:27, 25:27, 25:27], 0.9))
    out = postprocess(p, [V.AORTA], 1.0, min_vessel_mm3=50)
    assert out[3, 3, 3] == out[12, 12, 12] == V.AORTA          # 125 mm³ each: kept
    assert out[25, 25, 25] == 0                                  # 8 mm³ speck: removed


def test_lesions_are_kept_only_inside_their_dilated_host():
    shape = (40, 40, 40)
    p = _probs(shape, (0, S[5:25, 5:25, 5:25], 0.9),               # liver
               (1, S[20:28, 10:14, 10:14], 0.8),                   # tumour bulging 3 mm out of the liver
               (1, S[33:38, 33:38, 33:38], 0.8))                   # "tumour" far outside
    out = postprocess(p, [V.LIVER, V.LIVER_TUMOR], 1.0, host_dilation_mm=5.0, host_enclosure=0, **NOPEAK)
    assert out[26, 12, 12] == V.LIVER_TUMOR                      # within 5 mm of the liver
    assert out[27, 12, 12] == V.LIVER_TUMOR
    assert out[35, 35, 35] == 0                                   # outside: removed
    # host not requested: lesions kept as they are
    alone = postprocess(p[1:], [V.LIVER_TUMOR], 1.0, **NOPEAK)
    assert alone[35, 35, 35] == V.LIVER_TUMOR
    # only one kidney requested for a kidney tumour: a tumour on the other side cannot be judged, kept
    q = _probs(shape, (0, S[5:15, 5:15, 5:15], 0.9), (1, S[30:35, 30:35, 30:35], 0.9))
    one_side = postprocess(q, [V.RIGHT_KIDNEY, V.KIDNEY_TUMOR], 1.0, **NOPEAK)
    assert one_side[32, 32, 32] == V.KIDNEY_TUMOR
    both = postprocess(np.concatenate([q, np.zeros_like(q[:1])]), [V.RIGHT_KIDNEY, V.KIDNEY_TUMOR, V.LEFT_KIDNEY],
                       1.0, **NOPEAK)
    assert both[32, 32, 32] == 0


def test_lesions_must_lie_in_their_host_not_beside_it():
    shape = (40, 40, 40)
    liver = S[5:30, 5:30, 5:30]
    p = _probs(shape, (0, liver, 0.9),
               (1, S[10:16, 10:16, 10:16], 0.9),                   # a tumour deep in the liver
               (1, S[10:16, 27:33, 10:16], 0.9))                   # a "tumour" half out of the liver's edge
    p[0][10:16, 10:16, 10:16] = 0.95                               # the organ's mask holds its lesions
    out = postprocess(p, [V.LIVER, V.LIVER_TUMOR], 1.0, **NOPEAK)
    assert out[12, 12, 12] == V.LIVER_TUMOR
    assert out[12, 31, 12] == 0 and out[12, 28, 12] == V.LIVER    # beside the organ: not its lesion
    off = postprocess(p, [V.LIVER, V.LIVER_TUMOR], 1.0, host_enclosure=0, **NOPEAK)
    assert off[12, 31, 12] == V.LIVER_TUMOR                         # the rule off: only the dilation limits it
    # a lung nodule is enclosed by its lung (the lung's mask holds the nodule and the air around it);
    # a blob in the fat beside the lung that touches it is not a nodule
    q = _probs(shape, (0, S[5:35, 5:20, 5:35], 0.9), (1, S[15:20, 10:15, 15:20], 0.9),
               (1, S[15:20, 18:24, 25:30], 0.9))
    q[0][15:20, 10:15, 15:20] = 0.95
    q = np.concatenate([q, np.zeros_like(q[:1])])                  # both lungs requested, so the rule applies
    lungs = postprocess(q, [V.RIGHT_LUNG, V.LUNG_TUMOR, V.LEFT_LUNG], 1.5, **NOPEAK)
    assert lungs[17, 12, 17] == V.LUNG_TUMOR and lungs[17, 22, 27] == 0
    with pytest.raises(InvalidInputError, match="host_enclosure"):
        postprocess(p, [V.LIVER, V.LIVER_TUMOR], 1.0, host_enclosure=1.5)


def test_small_lesions_are_removed():
    p = _probs((30, 30, 30), (0, S[2:8, 2:8, 2:8], 0.9), (0, S[20:22, 20:22, 20:22], 0.9))
    out = postprocess(p, [V.LUNG_TUMOR], 1.5, min_lesion_mm3=50.0, lesion_peak=0.5)  # 216 × 3.375 mm³ kept; 8 × 3.375 = 27 removed
    assert out[4, 4, 4] == V.LUNG_TUMOR and out[21, 21, 21] == 0


def test_by_default_lung_nodules_keep_a_lower_size_floor_than_other_lesions():
    # 18 voxels of 3.375 mm³ = 61 mm³: a lung nodule the Fleischner rules act on, but a
    # kidney lesion too small to characterise
    p = _probs((30, 30, 30), (0, S[2:5, 2:5, 2:4], 0.9))
    assert np.count_nonzero(postprocess(p, [V.LUNG_TUMOR], 1.5, lesion_peak=0.5)) == 18
    assert not postprocess(p, [V.KIDNEY_TUMOR], 1.5, lesion_peak=0.5).any()
    # a request's minimum applies to every class
    assert np.count_nonzero(postprocess(p, [V.KIDNEY_TUMOR], 1.5, min_lesion_mm3=50.0, lesion_peak=0.5)) == 18
    assert not postprocess(p, [V.LUNG_TUMOR], 1.5, min_lesion_mm3=70.0, lesion_peak=0.5).any()


def test_unconfident_lesions_are_removed_by_their_peak_probability():
    p = _probs((30, 30, 30), (0, S[2:8, 2:8, 2:8], 0.6), (0, S[20:26, 20:26, 20:26], 0.6))
    p[0, 22, 22, 22] = 0.95                                         # the second blob has a confident core
    out = postprocess(p, [V.LUNG_TUMOR], 1.5, min_lesion_mm3=0, lesion_peak=0.9)
    assert out[4, 4, 4] == 0 and out[21, 21, 21] == V.LUNG_TUMOR    # the whole confident component stays
    kept = postprocess(p, [V.LUNG_TUMOR], 1.5, min_lesion_mm3=0, lesion_peak=0.5)
    assert kept[4, 4, 4] == V.LUNG_TUMOR
    organs = postprocess(p, [V.LIVER], 1.5, lesion_peak=0.99)       # organs are not filtered by it
    assert np.count_nonzero(organs == V.LIVER) == 6 ** 3   # its largest component, unconfident or not
    with pytest.raises(InvalidInputError, match="lesion_peak"):
        postprocess(p, [V.LUNG_TUMOR], 1.5, lesion_peak=1.5)


def test_elongation_is_the_ratio_of_the_longest_to_the_shortest_principal_axis():
    from radmesh.model.postprocess import elongation

    zz, yy, xx = np.mgrid[-10:11, -10:11, -10:11]
    ball = np.argwhere(zz ** 2 + yy ** 2 + xx ** 2 <= 100)
    assert elongation(ball, (1.0, 1.0, 1.0)) == pytest.approx(1.0, abs=0.01)
    cigar = np.argwhere((zz / 9.5) ** 2 + (yy / 3.2) ** 2 + (xx / 3.2) ** 2 <= 1)   # three times as long as wide
    assert elongation(cigar, (1.0, 1.0, 1.0)) == pytest.approx(3.0, rel=0.05)
    # in millimetres, not voxels: the same voxels on a grid 3 times as fine across are a ball again
    assert elongation(cigar, (1.0, 3.0, 3.0)) == pytest.approx(1.0, rel=0.05)
    assert elongation(np.array([[4, 5, 6]]), (1.5, 1.5, 1.5)) == 1.0                   # a voxel fills a cube
    sheet = np.argwhere(np.ones((1, 10, 10), bool))                                   # a voxel thick: finite
    assert elongation(sheet, (1.0, 1.0, 1.0)) == pytest.approx(10.0, rel=0.01)


def test_elongated_lesions_are_removed_when_the_weights_say_so():
    # a round lesion 6 voxels across and a strand 12 × 2 × 2 voxels (a vessel the model called a lesion)
    p = _probs((30, 30, 30), (0, S[2:8, 2:8, 2:8], 0.99), (0, S[15:27, 20:22, 20:22], 0.99))
    kept = postprocess(p, [V.LIVER_TUMOR], 1.5, **NOPEAK)
    assert kept[4, 4, 4] == V.LIVER_TUMOR and kept[20, 21, 21] == V.LIVER_TUMOR       # by default: no rule
    organs = postprocess(p, [V.LIVER], 1.5, lesion_max_elongation={V.LIVER: 1.0})     # organs are not filtered
    assert np.count_nonzero(organs) == 6 ** 3                                         # (its most confident piece)
    out = postprocess(p, [V.LIVER_TUMOR], 1.5, lesion_max_elongation={V.LIVER_TUMOR: 2.5}, **NOPEAK)
    assert out[4, 4, 4] == V.LIVER_TUMOR and out[20, 21, 21] == 0
    assert np.count_nonzero(out) == 6 ** 3
    # per class: a class the table does not list keeps its strand, and 0 is no rule
    other = postprocess(p, [V.KIDNEY_TUMOR], 1.5, lesion_max_elongation={V.LIVER_TUMOR: 2.5}, **NOPEAK)
    off = postprocess(p, [V.LIVER_TUMOR], 1.5, lesion_max_elongation={V.LIVER_TUMOR: 0}, **NOPEAK)
    assert other[20, 21, 21] == V.KIDNEY_TUMOR and off[20, 21, 21] == V.LIVER_TUMOR
    for bad in (0.5, float("inf"), float("nan")):
        with pytest.raises(InvalidInputError, match="lesion_max_elongation"):
            postprocess(p, [V.LIVER_TUMOR], 1.5, lesion_max_elongation={V.LIVER_TUMOR: bad})


def test_lesions_sharing_a_host_take_one_class_per_lesion():
    classes = [V.KIDNEY_TUMOR, V.KIDNEY_CYST]
    p = _probs((30, 30, 30), (1, S[8:16, 8:16, 4:12], 0.98),               # a cyst, 8³ voxels ...
               (0, S[8:16, 8:16, 10:12], 0.9))                              # ... whose rim the model calls tumour
    p[1][8:16, 8:16, 10:12] = 0.6
    out = postprocess(p, classes, 1.0, **NOPEAK)
    assert np.count_nonzero(out == V.KIDNEY_CYST) == 8 ** 3 and not np.any(out == V.KIDNEY_TUMOR)
    # the vote is per component: a separate tumour elsewhere stays a tumour
    p[0][20:26, 20:26, 20:26] = 0.99
    out = postprocess(p, classes, 1.0, **NOPEAK)
    assert np.count_nonzero(out == V.KIDNEY_TUMOR) == 6 ** 3 and np.count_nonzero(out == V.KIDNEY_CYST) == 8 ** 3
    # a full tie in votes goes to the higher summed probability
    q = _probs((10, 10, 10), (0, S[2:8, 2:8, 2:5], 0.9), (1, S[2:8, 2:8, 5:8], 0.95))
    assert set(np.unique(postprocess(q, classes, 1.0, **NOPEAK))) == {0, V.KIDNEY_CYST}
    # lesions of different hosts are not grouped
    assert lesion_groups([V.LIVER_TUMOR, V.KIDNEY_TUMOR, V.HEPATIC_VESSEL_TUMOR, V.KIDNEY_CYST, V.LUNG_TUMOR]) == \
        [[V.LIVER_TUMOR, V.HEPATIC_VESSEL_TUMOR], [V.KIDNEY_TUMOR, V.KIDNEY_CYST]]


def test_lesion_fragments_on_the_scans_grid_go_to_the_label_around_them():
    labels = np.zeros((12, 20, 20), np.uint8)
    labels[2:10, 2:18, 2:18] = V.RIGHT_KIDNEY
    labels[4:8, 4:9, 4:9] = V.KIDNEY_CYST                  # a cyst, 100 voxels of 2 mm³: 200 mm³
    labels[4, 12, 12] = labels[5, 12, 13] = V.KIDNEY_CYST   # its tip split off inside the kidney: 4 mm³
    labels[0, 0, 0] = V.KIDNEY_CYST                         # a speck outside it
    labels[6, 14, 14] = V.LUNG_TUMOR                        # a 2 mm³ nodule fragment (lung minimum 20 mm³)
    out = absorb_lesion_fragments(labels.copy(), voxel_mm3=2.0)
    assert np.count_nonzero(out == V.KIDNEY_CYST) == 100
    assert out[4, 12, 12] == out[5, 12, 13] == V.RIGHT_KIDNEY and out[0, 0, 0] == 0
    assert out[6, 14, 14] == V.RIGHT_KIDNEY
    # the request's minimum replaces the class defaults; 0 keeps every fragment
    assert np.array_equal(absorb_lesion_fragments(labels.copy(), voxel_mm3=2.0, min_lesion_mm3=0), labels)
    assert not np.any(absorb_lesion_fragments(labels.copy(), voxel_mm3=2.0, min_lesion_mm3=250) == V.KIDNEY_CYST)


def test_lungs_are_split_by_the_body_midline_when_both_are_requested():
    shape = (10, 40, 60)
    body = np.zeros(shape, bool)
    body[:, 5:35, 5:55] = True                                     # centre x = 29.5, wider than deep
    # one blob called "right lung" straddling the midline, and a small "left lung" blob on the right
    p = _probs(shape, (0, S[2:8, 10:30, 12:48], 0.9), (1, S[2:8, 10:30, 14:18], 0.95))
    out = postprocess(p, [V.RIGHT_LUNG, V.LEFT_LUNG], 1.0, body_mask=body)
    assert (out[:, :, 12:29][p[0, :, :, 12:29] > 0.5] == V.RIGHT_LUNG).all()   # patient's right = low x (LPS)
    assert (out[:, :, 30:48][p[0, :, :, 30:48] > 0.5] == V.LEFT_LUNG).all()
    # only one lung requested: no split
    alone = postprocess(p[:1], [V.RIGHT_LUNG], 1.0, body_mask=body)
    assert np.count_nonzero(alone == V.RIGHT_LUNG) == np.count_nonzero(p[0] > 0.5)


def test_kidneys_predicted_on_one_side_are_given_back_their_sides():
    shape = (10, 40, 60)
    body = np.zeros(shape, bool)
    body[:, 5:35, 5:55] = True                                     # centre x = 29.5
    # both kidneys called "left kidney" (the usual confusion: a window cannot see which side it is on)
    p = _probs(shape, (1, S[2:8, 20:30, 10:18], 0.9), (1, S[2:8, 20:30, 42:50], 0.9))
    out = postprocess(p, [V.RIGHT_KIDNEY, V.LEFT_KIDNEY], 1.0, body_mask=body)
    assert (out[2:8, 20:30, 10:18] == V.RIGHT_KIDNEY).all()        # patient's right = low x (LPS)
    assert (out[2:8, 20:30, 42:50] == V.LEFT_KIDNEY).all()
    # without the split, "largest component" would have kept one kidney and dropped the other
    alone = postprocess(p[1:], [V.LEFT_KIDNEY], 1.0, body_mask=body)
    assert np.count_nonzero(alone == V.LEFT_KIDNEY) == 6 * 10 * 8


def _chest(shape=(12, 40, 60)):
    """A body of soft tissue (windowed 0.5) with air (0) for two lungs and, below a
    tissue wall, a bowel gas pocket; the body mask includes the air it surrounds."""
    img = np.zeros(shape, np.float32)
    body = np.zeros(shape, bool)
    body[:, 4:36, 4:56] = True
    img[body] = 0.5
    img[1:7, 8:32, 8:27] = 0.0                                      # right lung (patient's right = low x)
    img[1:7, 8:32, 33:52] = 0.0                                     # left lung
    img[1, 18:22, 27:33] = 0.0                                      # an air bridge (a trachea) joins them
    img[8:11, 10:20, 10:20] = 0.0                                   # bowel gas, walled off by z = 7
    return img, body


def test_lungs_gain_the_air_they_overlap_and_nothing_walled_off():
    img, body = _chest()
    # the model saw only the lungs' edges: a window deep in the air cannot tell it from gas
    p = _probs(img.shape, (0, S[1:7, 8:32, 8:12], 0.9), (1, S[1:7, 8:32, 48:52], 0.9))
    out = postprocess(p, [V.RIGHT_LUNG, V.LEFT_LUNG], 1.0, body_mask=body, image=img)
    assert (out[1:7, 8:32, 8:27] == V.RIGHT_LUNG).all() and (out[1:7, 8:32, 33:52] == V.LEFT_LUNG).all()
    assert not out[8:11].any() and not out[2:7, :, 27:33].any()   # the gas and the tissue between stay out
    assert (out[1, 18:22, 27:29] == V.RIGHT_LUNG).all() and (out[1, 18:22, 31:33] == V.LEFT_LUNG).all()
    # one side requested: it gains only on its own side of the midline
    alone = postprocess(p[1:], [V.LEFT_LUNG], 1.0, body_mask=body, image=img)
    assert (alone[1:7, 8:32, 33:52] == V.LEFT_LUNG).all() and not alone[:, :, :28].any()
    # without the image, or without a body (outside air would pass for lung), the masks are the model's
    for kw in (dict(body_mask=body), dict(image=img), dict(body_mask=np.zeros_like(body), image=img)):
        assert np.count_nonzero(postprocess(p, [V.RIGHT_LUNG, V.LEFT_LUNG], 1.0, **kw)) == np.count_nonzero(p > 0.5)


def test_an_organ_gains_the_air_it_encloses_and_not_air_it_only_touches():
    img, body = _chest()
    img[1:7] = 0.5                                                  # no lungs in this one
    img[1, 18:22, 27:33] = 0.5
    img[2:6, 12:20, 30:40] = 0.0                                    # the stomach's gas cap
    # the model called the stomach wall and fluid around the cap, not the gas itself
    p = _probs(img.shape, (0, S[1:7, 11:28, 29:41], 0.9))
    p[0][2:6, 12:20, 30:40] = 0.1
    out = postprocess(p, [V.STOMACH], 1.0, body_mask=body, image=img)
    assert (out[2:6, 12:20, 30:40] == V.STOMACH).all()
    assert not out[8:11, 10:20, 10:20].any()                        # the bowel gas touches no organ
    # a pocket the organ only touches on one side stays unlabelled
    q = _probs(img.shape, (0, S[1:7, 19:28, 29:41], 0.9))
    img2 = img.copy()
    img2[2:6, 12:21, 30:40] = 0.0
    side = postprocess(q, [V.STOMACH], 1.0, body_mask=body, image=img2)
    assert not side[2:6, 12:19, 30:40].any()


def test_midline_follows_a_rotated_body():
    shape = (4, 101, 101)
    yy, xx = np.mgrid[0:101, 0:101] - 50.0
    a = np.radians(10)
    u = xx * np.cos(a) + yy * np.sin(a)                             # long axis rotated 10° in-plane
    v = -xx * np.sin(a) + yy * np.cos(a)
    body = np.broadcast_to((u / 45) ** 2 + (v / 25) ** 2 <= 1, shape)
    centre, axis = midline(body, (1.0, 1.0, 1.0))
    assert np.allclose(centre, [50, 50], atol=1.0)
    assert np.degrees(np.arccos(abs(axis @ [np.sin(a), np.cos(a)]))) < 2.0


def test_overlaps_lesion_beats_its_host_otherwise_highest_probability():
    shape = (20, 20, 20)
    p = _probs(shape, (0, S[2:18, 2:18, 2:18], 0.95),               # liver
               (1, S[8:12, 8:12, 8:12], 0.6),                       # liver tumour, less probable than the liver
               (2, S[2:18, 2:18, 14:20], 0.7),                      # stomach overlapping the liver's edge
               (2, S[2:18, 2:18, 16:20], 0.99))
    out = postprocess(p, [V.LIVER, V.LIVER_TUMOR, V.STOMACH], 1.0, **NOPEAK)
    assert out[10, 10, 10] == V.LIVER_TUMOR
    assert out[10, 10, 15] == V.LIVER                               # 0.95 > 0.7
    assert out[10, 10, 17] == V.STOMACH                             # 0.99 > 0.95
    assert out[10, 10, 19] == V.STOMACH


def test_postprocess_rejects_mismatched_inputs():
    with pytest.raises(InvalidInputError):
        postprocess(np.zeros((2, 4, 4, 4), np.float32), [V.LIVER], 1.0)
    with pytest.raises(InvalidInputError):
        postprocess(np.zeros((2, 4, 4, 4), np.float32), [V.LIVER, V.LIVER], 1.0)


def test_nothing_is_labelled_outside_the_body():
    from radmesh.model.preprocess import body_mask

    # a ring of soft tissue (the body wall) around air (a lung), in air
    img = np.zeros((6, 40, 40), np.float32)
    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(yy - 20, xx - 20)
    img[:, (r >= 10) & (r < 14)] = 0.5
    body = body_mask(img)
    assert body[3, 20, 20] and body[3, 20, 31] and not body[3, 2, 2]   # enclosed air is inside, outside air is not
    p = np.zeros((1, 6, 40, 40), np.float32)
    p[0][:, r < 10] = 0.92                                             # the lung
    p[0][:, :, :9] = 0.95          # a sheet of outside air called lung, larger than the lung: without rule 1 it would win
    out = postprocess(p, [V.LEFT_LUNG], 1.0, body_mask=body)
    assert out[3, 20, 20] == V.LEFT_LUNG and out[3, 2, 2] == 0
    assert not body_mask(np.zeros((3, 8, 8), np.float32)).any()
    everywhere = postprocess(p, [V.LEFT_LUNG], 1.0, body_mask=np.zeros((6, 40, 40), bool))  # empty: no restriction
    assert everywhere[3, 2, 2] == V.LEFT_LUNG or everywhere[3, 20, 20] == V.LEFT_LUNG


def test_the_body_is_found_on_the_scans_own_slices():
    """An oblique scan's tilted top face cuts the lungs: on the canonical grid they meet the
    unscanned corner (air to the window) rather than the chest wall, and a body test there
    would drop them. On the scan's own slices they stay inside."""
    from radmesh.model.preprocess import body_crop, body_mask, body_on_grid, labels_to_model_space

    ph = generate(9)                                               # full size, oblique: as evaluation seed 9
    assert ph.ct.geometry.is_oblique
    image = to_model_space(ph.ct, 3.0)
    truth = labels_to_model_space(ph.labels, image.geometry).array
    lung = (truth == V.RIGHT_LUNG) | (truth == V.LEFT_LUNG)
    outside = (truth == 0) & (image.array == 0)                    # air, and not inside any organ
    on_grid = body_on_grid(ph.ct, image.geometry)
    canonical = body_mask(image.array)
    print(f"lung outside the body: {np.mean(~on_grid[lung]):.3f} (canonical slices {np.mean(~canonical[lung]):.3f})")
    assert np.mean(~on_grid[lung]) < 0.01 < np.mean(~canonical[lung])
    assert np.mean(on_grid[outside]) < 0.05                        # the air around the patient stays out
    box, body = body_crop(ph.ct, image.geometry)
    np.testing.assert_array_equal(body, on_grid[box])
    assert np.prod([s.stop - s.start for s in box]) < image.array.size  # the air around was cut away
    assert body.sum() == on_grid.sum()                              # the box holds the whole body
