"""The synthetic CT phantom: determinism, labels, HU, exact lesions, truth and files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.imageio import read_volume
from radmesh.phantom.generator import LESION_CLASSES, ORGAN_CLASSES, Phantom, PhantomConfig, generate, write_phantom

SMALL = PhantomConfig(in_plane_size=128, spacing_xyz_mm=(3.0, 3.0, 3.0))
ALL_LESIONS = (vocab.KIDNEY_TUMOR, vocab.LIVER_TUMOR, vocab.LIVER_TUMOR, vocab.PANCREAS_TUMOR,
               vocab.LUNG_TUMOR, vocab.KIDNEY_CYST)
ALLOWED = {0, *ORGAN_CLASSES, *LESION_CLASSES}
CUBE = np.ones((3, 3, 3), dtype=bool)


@pytest.fixture(scope="module")
def small() -> Phantom:
    return generate(7, SMALL)


@pytest.fixture(scope="module")
def lesioned() -> Phantom:
    """Every lesion class on a 2 mm grid, axis-aligned."""
    return generate(21, PhantomConfig(in_plane_size=192, spacing_xyz_mm=(2.0, 2.0, 2.0), oblique=False,
                                      lesions=ALL_LESIONS))


@pytest.fixture(scope="module")
def oblique() -> Phantom:
    return generate(5, PhantomConfig(in_plane_size=192, spacing_xyz_mm=(2.0, 2.0, 2.5), oblique=True,
                                     lesions=ALL_LESIONS))


@pytest.fixture(scope="module")
def fine() -> list[Phantom]:
    """Grids fine for their lesions, for the voxel volume of large lesions."""
    cfg = PhantomConfig(in_plane_size=192, spacing_xyz_mm=(2.0, 2.0, 2.0), noise=False, blur=False,
                        lesions=(*ALL_LESIONS, vocab.LIVER_TUMOR))
    return [generate(s, cfg) for s in (1, 4)]


def lps_of(volume_geometry, mask: np.ndarray) -> np.ndarray:
    return volume_geometry.to_lps(np.argwhere(mask))


def lesion_components(p: Phantom) -> list[tuple[np.ndarray, dict]]:
    """Each truth lesion paired with its 26-connected component in the label map."""
    lab = p.labels.array
    comps, n = ndimage.label(np.isin(lab, LESION_CLASSES), structure=CUBE)
    assert n == len(p.truth["lesions"]), "every lesion is its own 26-connected component"
    out = []
    for les in p.truth["lesions"]:
        k, j, i = np.round(p.labels.geometry.to_index_zyx(np.array([les["centre_lps_mm"]]))[0]).astype(int)
        ids = np.unique(comps[max(k - 1, 0):k + 2, max(j - 1, 0):j + 2, max(i - 1, 0):i + 2])
        ids = ids[ids > 0]
        assert len(ids) == 1, f"lesion {les['id']} has no single component at its centre"
        out.append((comps == ids[0], les))
    assert len({int(np.argmax(m)) for m, _ in out}) == len(out)
    return out


# ---- determinism --------------------------------------------------------------------

def test_same_seed_same_case() -> None:
    a, b = generate(3, SMALL), generate(3, SMALL)
    for name in ("ct", "labels", "pancreas_subregions"):
        va, vb = getattr(a, name), getattr(b, name)
        assert va.array.dtype == vb.array.dtype
        assert va.array.tobytes() == vb.array.tobytes()
        assert va.geometry.matches(vb.geometry, tol_mm=0.0)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)


def test_different_seeds_differ(small: Phantom) -> None:
    other = generate(8, SMALL)
    assert other.truth != small.truth
    if other.ct.array.shape == small.ct.array.shape:
        assert not np.array_equal(other.ct.array, small.ct.array)


def test_switching_noise_off_keeps_the_anatomy(small: Phantom) -> None:
    quiet = generate(7, PhantomConfig(in_plane_size=128, spacing_xyz_mm=(3.0, 3.0, 3.0), noise=False))
    assert np.array_equal(quiet.labels.array, small.labels.array)
    assert quiet.truth["lesions"] == small.truth["lesions"]
    assert not np.array_equal(quiet.ct.array, small.ct.array)


# ---- labels, CT and HU ------------------------------------------------------------------

def test_small_config(small: Phantom) -> None:
    nz, ny, nx = small.ct.array.shape
    assert (ny, nx) == (128, 128)
    assert small.ct.geometry.spacing_xyz_mm == (3.0, 3.0, 3.0)
    assert 150 <= nz * 3.0 <= 303
    present = {o["class_index"] for o in small.truth["organs"]}
    assert present == set(ORGAN_CLASSES)


def test_label_and_ct_types(small: Phantom, oblique: Phantom) -> None:
    for p in (small, oblique):
        lab, ct = p.labels.array, p.ct.array
        assert lab.dtype == np.uint8 and ct.dtype == np.int16
        assert set(np.unique(lab).tolist()) <= ALLOWED
        assert ct.min() >= -1024 and ct.max() <= 3071
        assert p.labels.geometry is p.ct.geometry is p.pancreas_subregions.geometry
        assert p.pancreas_subregions.array.dtype == np.uint8


def test_organ_truth_matches_label_map(small: Phantom) -> None:
    lab = small.labels.array
    vox_ml = small.labels.geometry.voxel_volume_mm3 / 1000
    for o in small.truth["organs"]:
        n = int(np.count_nonzero(lab == o["class_index"]))
        assert o["voxel_count"] == n
        assert o["volume_ml"] == pytest.approx(n * vox_ml)
        assert o["name"] == vocab.get(o["class_index"]).name


def _interior_mean(p: Phantom, classes: tuple[int, ...]) -> float:
    mask = np.isin(p.labels.array, classes)
    mask = ndimage.binary_erosion(mask, CUBE, iterations=2)
    assert mask.sum() > 50
    return float(p.ct.array[mask].mean())


@pytest.mark.parametrize("seed", [4, 9])
def test_hu_per_organ(seed: int) -> None:
    p = generate(seed, PhantomConfig(in_plane_size=160, spacing_xyz_mm=(2.5, 2.5, 2.5)))
    hu = p.truth["hu"]
    assert _interior_mean(p, (vocab.LIVER,)) == pytest.approx(hu["liver"], abs=8)
    assert _interior_mean(p, (vocab.SPLEEN,)) == pytest.approx(hu["spleen"], abs=8)
    assert _interior_mean(p, (vocab.RIGHT_LUNG, vocab.LEFT_LUNG)) == pytest.approx(hu["lung"], abs=15)
    kidney = _interior_mean(p, (vocab.RIGHT_KIDNEY, vocab.LEFT_KIDNEY))
    assert hu["kidney_medulla"] - 8 <= kidney <= hu["kidney_cortex"] + 8
    assert _interior_mean(p, (vocab.AORTA,)) == pytest.approx(hu["aorta"], abs=12)
    outside = p.ct.array[:, :4, :4]  # a corner of the field of view: air
    assert outside.mean() == pytest.approx(-1000, abs=8)
    for key, (lo, hi) in {"fat": (-110, -90), "muscle": (40, 60), "liver": (100, 120), "lung": (-870, -830),
                          "liver_tumor": (50, 70), "kidney_cyst": (0, 12)}.items():
        assert lo <= hu[key] <= hi
    assert 8 <= p.truth["acquisition"]["noise_sigma_hu"] <= 20


def test_noise_sigma_is_what_truth_says() -> None:
    cfg = PhantomConfig(in_plane_size=160, spacing_xyz_mm=(2.0, 2.0, 2.0))
    noisy = generate(12, cfg)
    clean = generate(12, PhantomConfig(in_plane_size=160, spacing_xyz_mm=(2.0, 2.0, 2.0), noise=False))
    diff = noisy.ct.array.astype(float) - clean.ct.array.astype(float)
    inside = (noisy.ct.array > -900) & (noisy.ct.array < 500)  # away from clipping
    assert diff[inside].std() == pytest.approx(noisy.truth["acquisition"]["noise_sigma_hu"], rel=0.1)


def test_anatomy_is_placed_plausibly(small: Phantom) -> None:
    g, lab = small.labels.geometry, small.labels.array

    def centroid(c: int) -> np.ndarray:
        return lps_of(g, lab == c).mean(axis=0)

    liver, spleen = centroid(vocab.LIVER), centroid(vocab.SPLEEN)
    rk, lk = centroid(vocab.RIGHT_KIDNEY), centroid(vocab.LEFT_KIDNEY)
    aorta, ivc = centroid(vocab.AORTA), centroid(vocab.POSTCAVA)
    rl, ll = centroid(vocab.RIGHT_LUNG), centroid(vocab.LEFT_LUNG)
    assert liver[0] < 0 < spleen[0]  # liver on the patient's right (−x), spleen on the left
    assert rk[0] < 0 < lk[0] and rl[0] < 0 < ll[0]
    assert ivc[0] < aorta[0]  # IVC to the right of the aorta
    assert rk[1] > liver[1] - 20 and lk[1] > aorta[1]  # kidneys posterior
    assert rl[2] > liver[2] and ll[2] > spleen[2] - 20  # lung bases above the liver dome
    assert (small.truth["geometry"]["direction"] == np.asarray(g.direction).tolist())


# ---- lesions ----------------------------------------------------------------------------

def test_forced_lesions_are_exactly_those(lesioned: Phantom) -> None:
    got = sorted(les["class_index"] for les in lesioned.truth["lesions"])
    assert got == sorted(ALL_LESIONS)
    present = set(np.unique(lesioned.labels.array).tolist()) & set(LESION_CLASSES)
    assert present == set(ALL_LESIONS)
    none = generate(21, PhantomConfig(in_plane_size=128, spacing_xyz_mm=(3.0, 3.0, 3.0), lesions=()))
    assert none.truth["lesions"] == []
    assert not np.isin(none.labels.array, LESION_CLASSES).any()


def test_lesions_inside_host_and_apart(lesioned: Phantom, oblique: Phantom) -> None:
    for p in (lesioned, oblique):
        lab = p.labels.array
        for mask, les in lesion_components(p):
            cls, host = les["class_index"], les["host_class_index"]
            assert host in vocab.get(cls).host
            assert np.all(lab[mask] == cls)
            shell = ndimage.binary_dilation(mask, CUBE) & ~mask
            if les["enclosed"]:
                assert np.all(lab[shell] == host), "a lesion is enclosed by its host organ"
            else:  # a thin host on a coarse grid: the host still surrounds it mostly
                assert np.count_nonzero(lab[shell] == host) * 2 >= shell.sum()
            ring = ndimage.binary_dilation(mask, CUBE, iterations=2) & ~mask
            assert not np.isin(lab[ring], LESION_CLASSES).any(), "lesions keep ≥ 2 voxels apart"
            assert les["voxel_count"] == int(mask.sum())


def test_lesion_truth_is_analytic(lesioned: Phantom, oblique: Phantom) -> None:
    for p in (lesioned, oblique):
        vox_ml = p.labels.geometry.voxel_volume_mm3 / 1000
        for les in p.truth["lesions"]:
            a, b, c = les["semi_axes_mm"]
            assert a >= b >= c > 0
            assert les["volume_ml"] == pytest.approx(4 / 3 * np.pi * a * b * c / 1000)
            assert les["max_diameter_mm"] == pytest.approx(2 * a)
            assert 5.0 <= les["max_diameter_mm"] <= 60.0
            rot = np.asarray(les["rotation"])
            assert np.allclose(rot.T @ rot, np.eye(3), atol=1e-9)
            assert les["voxel_volume_ml"] == pytest.approx(les["voxel_count"] * vox_ml)
            assert 0.0 <= les["location_margin"] <= 1.0
            assert les["name"] == vocab.get(les["class_index"]).name


def test_lesion_diameters_in_range_over_seeds() -> None:
    seen = set()
    for seed in range(6):
        p = generate(seed, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(4.0, 4.0, 4.0), noise=False, blur=False))
        for les in p.truth["lesions"]:
            assert 5.0 <= les["max_diameter_mm"] <= 60.0
            seen.add(les["class_index"])
        n_liver = sum(les["class_index"] == vocab.LIVER_TUMOR for les in p.truth["lesions"])
        assert n_liver <= 3
    assert seen, "random presence produces some lesions"


def test_large_lesion_voxel_volume_matches_analytic(fine: list[Phantom]) -> None:
    checked = 0
    for p in fine:
        sp = max(p.labels.geometry.spacing_xyz_mm)
        for les in p.truth["lesions"]:
            if min(les["semi_axes_mm"]) >= 4 * sp:
                assert les["voxel_volume_ml"] == pytest.approx(les["volume_ml"], rel=0.03)
                checked += 1
    assert checked >= 4


def test_oblique_grid_and_centres(oblique: Phantom) -> None:
    g = oblique.labels.geometry
    assert g.is_oblique and not np.allclose(g.direction, np.eye(3))
    assert oblique.truth["acquisition"]["oblique"]
    checked = 0
    for mask, les in lesion_components(oblique):
        if les["voxel_count"] >= 150:
            centroid = lps_of(g, mask).mean(axis=0)
            assert np.linalg.norm(centroid - np.asarray(les["centre_lps_mm"])) < 1.0
            checked += 1
    assert checked >= 1


# ---- locations and sub-regions --------------------------------------------------------------

def _axis_fraction(points: np.ndarray, p: np.ndarray) -> float:
    mean = points.mean(axis=0)
    w, v = np.linalg.eigh(np.cov((points - mean).T, bias=True))
    axis = v[:, np.argmax(w)]
    axis = axis if axis[0] > 0 else -axis
    t = (points - mean) @ axis
    return float(((p - mean) @ axis - t.min()) / (t.max() - t.min()))


def test_pancreas_subregions(lesioned: Phantom, oblique: Phantom) -> None:
    for p in (lesioned, oblique):
        lab, sub, g = p.labels.array, p.pancreas_subregions.array, p.labels.geometry
        pancreas = np.isin(lab, (vocab.PANCREAS, vocab.PANCREAS_TUMOR))
        assert np.array_equal(sub > 0, pancreas)
        assert set(np.unique(sub).tolist()) == {0, 1, 2, 3}
        xs = [lps_of(g, sub == part)[:, 0].mean() for part in (1, 2, 3)]
        assert xs[0] < xs[1] < xs[2]  # head on the patient's right, tail on the left
        (les,) = [le for le in p.truth["lesions"] if le["class_index"] == vocab.PANCREAS_TUMOR]
        f = _axis_fraction(lps_of(g, pancreas), np.asarray(les["centre_lps_mm"]))
        assert les["location"] == ("head", "body", "tail")[min(2, int(f * 3))]
        assert les["location_margin"] == pytest.approx(min(abs(f - 1 / 3), abs(f - 2 / 3)), abs=1e-6)
        k, j, i = np.round(g.to_index_zyx(np.array([les["centre_lps_mm"]]))[0]).astype(int)
        if les["location_margin"] > 0.02:
            assert sub[k, j, i] == ("head", "body", "tail").index(les["location"]) + 1


def test_kidney_liver_lung_locations(lesioned: Phantom, oblique: Phantom) -> None:
    for p in (lesioned, oblique):
        lab, g = p.labels.array, p.labels.geometry
        for les in p.truth["lesions"]:
            c = np.asarray(les["centre_lps_mm"])
            host = les["host_class_index"]
            if les["class_index"] in (vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST):
                s = lps_of(g, lab == host)[:, 2]  # lesions are enclosed: the kidney label alone has the extent
                f = (c[2] - s.min()) / (s.max() - s.min())
                side = "right" if host == vocab.RIGHT_KIDNEY else "left"
                pole = ("lower pole", "mid", "upper pole")[min(2, int(f * 3))]
                assert les["location"] == f"{side} {pole}"
                assert les["laterality"] == side and les["subregion"] == pole
            elif les["class_index"] == vocab.LIVER_TUMOR:
                gb = lps_of(g, lab == vocab.GALL_BLADDER).mean(axis=0)
                ivc = lps_of(g, lab == vocab.POSTCAVA).mean(axis=0)
                d = ivc - gb
                n = np.array([d[1], -d[0], 0.0])
                n = n / np.linalg.norm(n) * np.sign(d[1])
                assert n[0] > 0
                dist = (c - gb) @ n
                assert les["location"] == ("left lobe" if dist > 0 else "right lobe")
                x = lps_of(g, np.isin(lab, (vocab.LIVER, vocab.LIVER_TUMOR)))[:, 0]
                assert les["location_margin"] == pytest.approx(abs(dist) / (x.max() - x.min()), abs=1e-6)
            elif les["class_index"] == vocab.LUNG_TUMOR:
                assert les["location"] == ("right" if host == vocab.RIGHT_LUNG else "left")


# ---- files ------------------------------------------------------------------------------------

def test_write_and_read_back(small: Phantom, tmp_path) -> None:
    paths = write_phantom(small, tmp_path / "case")
    assert set(paths) == {"ct", "labels", "pancreas_subregions", "truth"}
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == [
        "ct.nii.gz", "labels.nii.gz", "pancreas_subregions.nii.gz", "truth.json"]
    for name in ("ct", "labels", "pancreas_subregions"):
        vol = read_volume(paths[name])
        orig = getattr(small, name)
        assert vol.array.dtype == orig.array.dtype
        assert np.array_equal(vol.array, orig.array)
        assert vol.geometry.shape_zyx == orig.geometry.shape_zyx
        assert np.allclose(vol.geometry.spacing_xyz_mm, orig.geometry.spacing_xyz_mm, atol=1e-5)
        assert np.allclose(vol.geometry.origin_lps_mm, orig.geometry.origin_lps_mm, atol=1e-4)
        assert np.allclose(vol.geometry.direction, orig.geometry.direction, atol=1e-6)
        assert orig.geometry.matches(vol.geometry)
    truth = json.loads(paths["truth"].read_text())
    assert truth == json.loads(json.dumps(small.truth))
    assert truth["seed"] == 7 and truth["config"]["in_plane_size"] == 128
    assert truth["geometry"]["shape_zyx"] == list(small.ct.array.shape)


def test_oblique_written_geometry(oblique: Phantom, tmp_path) -> None:
    paths = write_phantom(oblique, tmp_path)
    vol = read_volume(paths["labels"])
    assert vol.geometry.is_oblique
    assert oblique.labels.geometry.matches(vol.geometry)


# ---- config ---------------------------------------------------------------------------------

def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="lesions"):
        generate(0, PhantomConfig(in_plane_size=64, lesions=(vocab.LIVER,)))
    with pytest.raises(InvalidInputError, match="seed"):
        generate(-1, SMALL)
    with pytest.raises(InvalidInputError, match="spacing"):
        generate(0, PhantomConfig(spacing_xyz_mm=(1.0, 0.0, 1.0)))


def test_progress_bar(capsys) -> None:
    p = generate(2, PhantomConfig(in_plane_size=64, spacing_xyz_mm=(5.0, 5.0, 5.0), oblique=False), progress=True)
    assert not p.labels.geometry.is_oblique
    assert "phantom 2" in capsys.readouterr().err


@pytest.mark.slow
def test_full_size_default_case() -> None:
    p = generate(0)
    nz, ny, nx = p.ct.array.shape
    sx, sy, sz = p.ct.geometry.spacing_xyz_mm
    assert (ny, nx) == (512, 512)
    assert 0.6 <= sx == sy <= 1.0 and 0.8 <= sz <= 5.0
    assert nz <= 300 and 145 <= nz * sz <= 305
    assert {o["class_index"] for o in p.truth["organs"]} == set(ORGAN_CLASSES)
    assert set(np.unique(p.labels.array).tolist()) <= ALLOWED
