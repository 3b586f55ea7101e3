"""Phantoms v2: every vocabulary class, bone, contrast phases, lesion patterns, regions, kernels, metal."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from radmesh.cli import main as cli_main
from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.model.data import phantom_config, prepare_case, remap_intensities
from radmesh.phantom.generator import (LESION_CLASSES_V2, ORGAN_CLASSES, ORGAN_CLASSES_V2, REGIONS_V2, PhantomConfig,
                                       generate)
from radmesh.phantom.phases import PATTERNS, PHASES, phase_ranges

V2_LESIONS = (vocab.KIDNEY_TUMOR, vocab.LIVER_TUMOR, vocab.PANCREAS_TUMOR, vocab.HEPATIC_VESSEL_TUMOR,
              vocab.LUNG_TUMOR, vocab.COLON_TUMOR, vocab.KIDNEY_CYST)
# An abdomen–pelvis case on a 2 mm grid, every lesion class forced, noise and blur off so
# tissue values can be read back exactly.
FULL = PhantomConfig(in_plane_size=192, spacing_xyz_mm=(2.0, 2.0, 2.0), slices=240, oblique=False,
                     lesions=V2_LESIONS, version=2, region="abdomen-pelvis", noise=False, blur=False)


@pytest.fixture(scope="module")
def full():
    return generate(6000, FULL)


def present(p) -> set[int]:
    return {int(c) for c in np.unique(p.labels.array) if c}


def test_all_32_classes_drawn(full):
    """One abdomen–pelvis case draws every class but the prostate (a female case) or both."""
    got = present(full)
    missing = set(range(1, 33)) - got
    assert missing <= {vocab.PROSTATE}, f"missing {sorted(missing)}"
    assert {o["class_index"] for o in full.truth["organs"]} == got & set(ORGAN_CLASSES_V2)
    # ...and over a handful of cases each organ class appears, the prostate in male cases only.
    seen = set()
    for seed in range(6001, 6005):
        p = generate(seed, PhantomConfig(in_plane_size=96, version=2, region="abdomen-pelvis", slices=120,
                                         spacing_xyz_mm=(4.0, 4.0, 4.0)))
        seen |= present(p)
    assert set(ORGAN_CLASSES_V2) - seen <= {vocab.PROSTATE}


def test_lesions_have_patterns_hosts_and_locations(full):
    lab = full.labels.array
    recs = full.truth["lesions"]
    assert sorted(r["class_index"] for r in recs) == sorted(V2_LESIONS)
    for r in recs:
        assert r["pattern"] in PATTERNS
        assert r["host_class_index"] in vocab.get(r["class_index"]).host or r["class_index"] == vocab.HEPATIC_VESSEL_TUMOR
        k, j, i = np.round(full.labels.geometry.to_index_zyx(np.array([r["centre_lps_mm"]]))[0]).astype(int)
        assert lab[k, j, i] == r["class_index"]
    by = {r["class_index"]: r for r in recs}
    assert by[vocab.KIDNEY_CYST]["pattern"] == "cystic"
    assert by[vocab.COLON_TUMOR]["location"] == "colon"
    assert by[vocab.HEPATIC_VESSEL_TUMOR]["location"] in ("right lobe", "left lobe")
    # A hepatic vessel tumour lies in the liver against a hepatic vessel.
    hvt = lab == vocab.HEPATIC_VESSEL_TUMOR
    d = ndimage.distance_transform_edt(lab != vocab.HEPATIC_VESSEL, sampling=full.labels.geometry.spacing_zyx_mm)
    assert float(d[hvt].min()) <= 8.0 + 2.0
    # A cystic lesion is water whatever its host (noise and blur are off: values are exact).
    ct = full.ct.array.astype(float)
    assert 0 <= float(np.median(ct[lab == vocab.KIDNEY_CYST])) <= 20
    # Each pattern's core against its host, in this case's own tissue values.
    hu = full.truth["hu"]
    host_key = {vocab.LIVER_TUMOR: "liver", vocab.PANCREAS_TUMOR: "pancreas", vocab.COLON_TUMOR: "colon_wall"}
    for cls, key in host_key.items():
        v = float(np.median(ct[lab == cls]))
        pattern = by[cls]["pattern"]
        if pattern == "hyper":
            assert v >= hu[key] + 19
        elif pattern in ("hypo", "necrotic", "rim", "cystic"):
            assert v < hu[key]


def test_bone_sits_where_v1_had_none(full):
    """Pelvis and hips: the femoral heads are bone (cortex brighter than their middle), the sacrum is bone,
    and the spine stops at the sacrum (no vertebral body in the lowest slices)."""
    ct, lab = full.ct.array.astype(float), full.labels.array
    h = full.truth["hu"]
    for cls in (vocab.LEFT_FEMUR_HEAD, vocab.RIGHT_FEMUR_HEAD):
        m = lab == cls
        core = ndimage.binary_erosion(m, iterations=3)
        assert np.isclose(np.median(ct[core]), h["bone_cancellous"], atol=1)
        assert (ct[m & ~ndimage.binary_erosion(m)] >= h["bone_cortical"] - 1).mean() > 0.5
    bone = ct >= h["bone_cancellous"] - 1
    # Bone in every slice that holds a femoral head, off the midline (not the spine).
    ks = np.unique(np.nonzero(lab == vocab.LEFT_FEMUR_HEAD)[0])
    assert all(bone[k].any() for k in ks)
    assert bone.sum() > 0.01 * bone.size


def test_phases_order_the_enhancement():
    """The same case in four phases: the aorta peaks in the arterial phase, the kidney's cortex and
    medulla part only in the arterial phase, excreted contrast appears in the bladder when delayed."""
    cases = {ph: generate(6001, PhantomConfig(in_plane_size=128, spacing_xyz_mm=(3.0, 3.0, 3.0), slices=160,
                                              version=2, region="abdomen-pelvis", phase=ph, noise=False, blur=False))
             for ph in PHASES}
    hu = {ph: c.truth["hu"] for ph, c in cases.items()}
    assert hu["arterial"]["aorta"] > hu["portal-venous"]["aorta"] > hu["non-contrast"]["aorta"]
    assert hu["portal-venous"]["portal_vein"] > hu["non-contrast"]["portal_vein"]
    assert hu["arterial"]["kidney_cortex"] - hu["arterial"]["kidney_medulla"] > 40
    assert abs(hu["non-contrast"]["kidney_cortex"] - hu["non-contrast"]["kidney_medulla"]) < 15
    for ph, c in cases.items():
        lo, hi = phase_ranges(ph)["aorta"]
        aorta = ndimage.binary_erosion(c.labels.array == vocab.AORTA)
        assert lo - 1 <= float(np.median(c.ct.array[aorta])) <= hi + 1
        assert c.truth["acquisition"]["phase"] == ph
    bladder = {ph: c.ct.array[c.labels.array == vocab.BLADDER] for ph, c in cases.items()}
    assert bladder["delayed"].max() >= 300 and bladder["portal-venous"].max() < 100
    # Pinning the phase leaves the anatomy as it is.
    assert all(np.array_equal(c.labels.array, cases["arterial"].labels.array) for c in cases.values())


@pytest.mark.parametrize("region", sorted(REGIONS_V2))
def test_regions(region):
    p = generate(6002, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(4.0, 4.0, 4.0), version=2,
                                     region=region))
    got = present(p)
    assert p.truth["acquisition"]["region"] == region
    if region == "slab":
        assert 20 <= p.ct.array.shape[0] <= 40
    if region == "pelvis":
        assert vocab.BLADDER in got and not got & {vocab.LIVER, vocab.RIGHT_LUNG, vocab.LEFT_LUNG}
    if region == "chest":
        assert {vocab.RIGHT_LUNG, vocab.LEFT_LUNG, vocab.ESOPHAGUS} <= got and vocab.BLADDER not in got
    if region in ("abdomen", "chest-abdomen", "abdomen-pelvis"):
        assert {vocab.LIVER, vocab.PANCREAS, vocab.RIGHT_KIDNEY, vocab.DUODENUM} <= got


def test_kernel_changes_the_noise_texture():
    """A sharp kernel's noise is less correlated between neighbouring voxels than a soft one's."""
    def lag1(kernel: str) -> float:
        p = generate(6003, PhantomConfig(in_plane_size=192, spacing_xyz_mm=(1.5, 1.5, 3.0), slices=60, version=2,
                                         region="abdomen", kernel=kernel, lesions=()))
        liver = ndimage.binary_erosion(p.labels.array == vocab.LIVER, iterations=4)
        ct = p.ct.array.astype(float)
        a, b = ct[:, :, :-1][liver[:, :, :-1] & liver[:, :, 1:]], ct[:, :, 1:][liver[:, :, :-1] & liver[:, :, 1:]]
        return float(np.corrcoef(a - a.mean(), b - b.mean())[0, 1])

    soft, sharp = lag1("soft"), lag1("sharp")
    assert sharp < soft - 0.15, (soft, sharp)


def test_v2_is_deterministic_and_v1_is_untouched():
    cfg = PhantomConfig(in_plane_size=96, spacing_xyz_mm=(4.0, 4.0, 4.0), version=2)
    a, b = generate(6004, cfg), generate(6004, cfg)
    assert np.array_equal(a.ct.array, b.ct.array) and np.array_equal(a.labels.array, b.labels.array)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)
    v1 = generate(6004, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(4.0, 4.0, 4.0)))
    assert present(v1) <= set(ORGAN_CLASSES) | set(vocab.LESION_INDICES)
    assert "region" not in v1.truth["acquisition"] and all("pattern" not in r for r in v1.truth["lesions"])


@pytest.mark.parametrize("kw, msg", [
    (dict(version=3), "version must be 1 or 2"),
    (dict(phase="arterial"), "only for version 2"),
    (dict(version=2, phase="venous"), "phase must be one of"),
    (dict(version=2, region="brain"), "region must be one of"),
    (dict(version=2, kernel="bone"), "kernel must be one of"),
    (dict(lesions=(vocab.COLON_TUMOR,)), "lesions must be drawn from"),
])
def test_bad_configs_are_refused(kw, msg):
    with pytest.raises(InvalidInputError, match=msg):
        generate(1, PhantomConfig(in_plane_size=64, **kw))


def test_cli_writes_a_v2_phantom(tmp_path, capsys):
    rc = cli_main(["phantom", "--seed", "3", "--out", str(tmp_path), "--size", "96", "--spacing-mm", "4,4,4",
                   "--phantom-version", "2", "--region", "pelvis", "--phase", "delayed", "--kernel", "sharp", "--quiet"])
    assert rc == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["config"]["version"] == 2
    assert (truth["acquisition"]["region"], truth["acquisition"]["phase"], truth["acquisition"]["kernel"]) == \
        ("pelvis", "delayed", "sharp")
    assert cli_main(["phantom", "--seed", "3", "--out", str(tmp_path / "x"), "--region", "pelvis", "--quiet"]) != 0
    assert "only for version 2" in capsys.readouterr().err


def test_metal_paints_metal_and_streaks():
    """Some v2 seeds carry metal; its voxels are at the top of the HU range and the truth says what it is."""
    for seed in range(6100, 6160):
        p = generate(seed, PhantomConfig(in_plane_size=64, spacing_xyz_mm=(6.0, 6.0, 6.0), version=2,
                                         region="abdomen", noise=False, blur=False))
        metal = p.truth["acquisition"]["metal"]
        if metal["kind"] != "none":
            break
    else:
        pytest.fail("no metal in 60 v2 cases (expected about 12 %)")
    assert metal["kind"] in ("clip", "screws") and metal["streak_amplitude_hu"] > 0
    assert int(p.ct.array.max()) >= 2000


def test_intensity_remap_moves_structures_not_background():
    rng = np.random.default_rng(0)
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:12, 2:12, 2:12] = vocab.LIVER
    labels[5:8, 5:8, 5:8] = vocab.LIVER_TUMOR
    ct = np.full(labels.shape, -100.0, np.float32)
    ct[labels == vocab.LIVER] = 110 + rng.normal(0, 5, (labels == vocab.LIVER).sum())
    ct[labels == vocab.LIVER_TUMOR] = 60
    shifts = []
    for seed in range(20):
        out = remap_intensities(ct, labels, np.random.default_rng(seed))
        assert np.array_equal(out[labels == 0], ct[labels == 0])
        liver = float(np.median(out[labels == vocab.LIVER]) - np.median(ct[labels == vocab.LIVER]))
        tumour = float(np.median(out[labels == vocab.LIVER_TUMOR]))
        assert abs(liver) <= 20.5
        assert tumour < float(np.median(out[labels == vocab.LIVER]))  # still hypoattenuating
        shifts.append(liver)
    assert np.std(shifts) > 5  # it does move


def test_training_cases_from_v2(tmp_path):
    cfg = phantom_config(20000, version=2)
    assert cfg.version == 2
    assert cfg.lesions is None or set(cfg.lesions) <= set(LESION_CLASSES_V2)
    classes = tuple(c.index for c in vocab.CLASSES)
    v2 = prepare_case(20001, classes, config=PhantomConfig(in_plane_size=128, version=2, region="abdomen"), version=2)
    assert v2.image.dtype == np.float32 and 0 <= v2.image.min() and v2.image.max() <= 1
    assert {vocab.INTESTINE, vocab.COLON, vocab.DUODENUM, vocab.PORTAL_SPLENIC_VEIN} <= set(v2.class_coords)
    # The same phantom without the remap differs inside the labelled structures only.
    plain = generate(20001, PhantomConfig(in_plane_size=128, version=2, region="abdomen"))
    remapped = remap_intensities(plain.ct.array, plain.labels.array, np.random.default_rng([20001, 0x1A7E]))
    inside = plain.labels.array > 0
    assert np.abs(remapped - plain.ct.array)[inside].mean() > 2
    assert np.array_equal(remapped[~inside], plain.ct.array[~inside])
