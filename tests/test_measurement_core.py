"""Tests of the measurement core on analytic shapes rasterised here, pyradiomics, and phantoms.

Ellipsoids are rasterised by voxel-centre inclusion in LPS space, on isotropic,
anisotropic and oblique grids, so every expected number is analytic.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from radmesh.common import vocabulary as V
from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Geometry, GeometryError, Volume
from radmesh.measurement import core, location
from radmesh.measurement.core import ATTENUATION_THRESHOLD_HU, measure
from radmesh.measurement.diameters import (
    farthest_pair,
    max_diameter,
    recist_axes,
    row_ends_zyx,
    surface_voxels_zyx,
)

# ---- helpers ----------------------------------------------------------------------


def grid_lps(g: Geometry) -> np.ndarray:
    """(z, y, x, 3) LPS positions of every voxel centre."""
    idx = np.indices(g.shape_zyx).reshape(3, -1).T
    return g.to_lps(idx).reshape(*g.shape_zyx, 3)


def paint(lab: np.ndarray, pts: np.ndarray, label: int, centre, semi, rot=None) -> np.ndarray:
    """Set ``label`` on voxels whose centre is inside the ellipsoid; returns the inside mask.

    ``rot``: 3×3 whose columns are the ellipsoid's axes in LPS (identity = axis-aligned).
    """
    r = np.eye(3) if rot is None else np.asarray(rot)
    q = (pts - np.asarray(centre, dtype=float)) @ r
    inside = np.sum((q / np.asarray(semi, dtype=float)) ** 2, axis=-1) <= 1.0
    lab[inside] = label
    return inside


def grid_around(half_extent_mm, spacing, direction=None, centre=(0.0, 0.0, 0.0)) -> Geometry:
    """A grid covering a cube of half-size ``half_extent_mm`` around ``centre`` in any orientation."""
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    sp = np.asarray(spacing, dtype=float)
    n = np.ceil(2 * half_extent_mm / sp).astype(int) + 1  # x, y, z counts
    # origin such that the grid centre is at ``centre``
    origin = np.asarray(centre) - d @ (sp * (n - 1) / 2.0)
    return Geometry((int(n[2]), int(n[1]), int(n[0])), tuple(sp), tuple(origin), d)


def ellipsoid_volume_ml(semi) -> float:
    a, b, c = semi
    return 4.0 / 3.0 * math.pi * a * b * c / 1000.0


def vols(lab: np.ndarray, g: Geometry, ct: np.ndarray | None = None):
    if ct is None:
        ct = np.zeros(lab.shape, dtype=np.int16)
    return Volume(ct, g), Volume(lab, g)


def pyradiomics_max3d(mask: np.ndarray, g: Geometry) -> float:
    import radiomics
    import SimpleITK as sitk
    from radiomics import shape

    radiomics.setVerbosity(40)
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    crop = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.uint8)
    m = sitk.GetImageFromArray(crop)
    im = sitk.GetImageFromArray(crop.astype(np.float32))
    for image in (m, im):
        image.SetSpacing(g.spacing_xyz_mm)
        image.SetDirection(tuple(g.direction.ravel()))
        image.SetOrigin(tuple(g.to_lps(lo[None, :])[0]))
    s = shape.RadiomicsShape(im, m, label=1)
    s.disableAllFeatures()
    s.enableFeatureByName("Maximum3DDiameter")
    return float(s.execute()["Maximum3DDiameter"])


GRIDS = {
    "isotropic": dict(spacing=(1.0, 1.0, 1.0), direction=None),
    "anisotropic": dict(spacing=(0.7, 0.7, 3.0), direction=None),
    "oblique": dict(spacing=(0.8, 0.9, 1.5),
                    direction=Rotation.from_euler("zyx", [25, -15, 35], degrees=True).as_matrix()),
    "flipped": dict(spacing=(0.9, 0.9, 2.0), direction=np.diag([-1.0, -1.0, 1.0])),  # RAS-stored data
}
SEMI = (16.0, 10.0, 8.0)
ROT = Rotation.from_euler("zyx", [30, 20, -40], degrees=True).as_matrix()


@pytest.fixture(scope="module", params=list(GRIDS))
def ellipsoid_case(request):
    spec = GRIDS[request.param]
    centre = (12.0, -7.0, 30.0)
    g = grid_around(20.0, spec["spacing"], spec["direction"], centre)
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    inside = paint(lab, grid_lps(g), V.LIVER_TUMOR, centre, SEMI, ROT)
    return request.param, g, lab, inside


# ---- volume and max diameter on analytic ellipsoids ----------------------------------


def test_volume_and_max_diameter_of_rotated_ellipsoid(ellipsoid_case):
    name, g, lab, inside = ellipsoid_case
    m = measure(*vols(lab, g))
    (s,) = m.structures
    assert s.class_index == V.LIVER_TUMOR and s.kind == "lesion" and len(s.lesions) == 1
    lesion = s.lesions[0]
    analytic = ellipsoid_volume_ml(SEMI)
    assert lesion.volume_ml == pytest.approx(analytic, rel=0.03), name
    assert s.volume_ml == pytest.approx(int(inside.sum()) * g.voxel_volume_mm3 / 1000.0)
    # Voxel centres are inside the ellipsoid: never longer than 2a, and within a voxel diagonal of it.
    assert lesion.max_diameter_mm <= 2 * max(SEMI) + 1e-9
    assert lesion.max_diameter_mm >= 2 * max(SEMI) - g.voxel_diagonal_mm
    # The endpoints are lesion voxel centres and their distance is the diameter.
    a, b = lesion.max_diameter_endpoints_lps_mm
    assert np.linalg.norm(a - b) == pytest.approx(lesion.max_diameter_mm)
    ij = np.rint(g.to_index_zyx(np.stack([a, b]))).astype(int)
    assert inside[tuple(ij.T)].all()
    # Centroid at the analytic centre (within half a voxel), box within the ellipsoid's box.
    assert np.linalg.norm(lesion.centroid_mm - np.array([12.0, -7.0, 30.0])) < g.voxel_diagonal_mm / 2


def test_max_diameter_is_exact_against_brute_force():
    rng = np.random.default_rng(7)
    for trial in range(25):
        shape = tuple(int(s) for s in rng.integers(1, 12, 3))
        mask = rng.random(shape) < rng.uniform(0.05, 0.7)
        if not mask.any():
            continue
        g = Geometry(shape, tuple(rng.uniform(0.4, 3.0, 3)), (3.0, -2.0, 1.0),
                     Rotation.random(random_state=trial).as_matrix())
        pts = g.to_lps(np.argwhere(mask))
        brute = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)).max()
        assert max_diameter(mask, g).length_mm == pytest.approx(brute, abs=1e-9)
        # The candidate points are a subset of the surface voxels.
        assert set(map(tuple, row_ends_zyx(mask))) <= set(map(tuple, surface_voxels_zyx(mask)))
        # RECIST long axis = the largest single-slice distance.
        best = 0.0
        for k in range(shape[0]):
            p = g.to_lps(np.argwhere(mask[k:k + 1]) + [k, 0, 0])
            if len(p):
                best = max(best, np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1)).max())
        assert recist_axes(mask, g).long_axis_mm == pytest.approx(best, abs=1e-9)


def test_degenerate_lesions():
    g = Geometry((5, 60, 60), (0.7, 0.8, 3.0))
    one = np.zeros(g.shape_zyx, bool)
    one[2, 3, 4] = True
    assert max_diameter(one, g).length_mm == 0.0
    r = recist_axes(one, g)
    assert (r.long_axis_mm, r.short_axis_mm, r.slice_index) == (0.0, 0.0, 2)
    line = np.zeros(g.shape_zyx, bool)
    line[1, 10, 5:55] = True  # 50 voxels on x: collinear, Qhull cannot build a hull
    assert max_diameter(line, g).length_mm == pytest.approx(49 * 0.7)
    flat = np.zeros(g.shape_zyx, bool)
    flat[3, 5:50, 2:58] = True  # one slice: coplanar in 3-D
    assert max_diameter(flat, g).length_mm == pytest.approx(math.hypot(55 * 0.7, 44 * 0.8))
    r = recist_axes(flat, g)
    assert r.long_axis_mm == pytest.approx(math.hypot(55 * 0.7, 44 * 0.8)) and r.slice_index == 3
    column = np.zeros(g.shape_zyx, bool)
    column[:, 7, 7] = True
    assert max_diameter(column, g).length_mm == pytest.approx(4 * 3.0)
    assert recist_axes(column, g).long_axis_mm == 0.0
    assert farthest_pair(np.array([[1.0, 2.0, 3.0]])) == (0.0, 0, 0)


def test_max_diameter_agrees_with_pyradiomics(ellipsoid_case):
    name, g, lab, inside = ellipsoid_case
    ours = measure(*vols(lab, g)).structures[0].lesions[0].max_diameter_mm
    theirs = pyradiomics_max3d(inside, g)
    # pyradiomics measures between mesh vertices on voxel boundaries: never shorter, at most ~1 voxel longer.
    assert theirs >= ours - 1e-6, name
    assert theirs - ours <= g.voxel_diagonal_mm, name


# ---- RECIST --------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 3.0), (0.6, 0.9, 2.5)])
def test_recist_axes_of_axis_aligned_ellipsoid(spacing):
    a, b, c = 18.0, 11.0, 9.0
    centre = (5.0, 5.0, 5.0)
    g = grid_around(21.0, spacing, None, centre)
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    paint(lab, grid_lps(g), V.LUNG_TUMOR, centre, (a, b, c))
    lesion = measure(*vols(lab, g)).structures[0].lesions[0]
    diag = g.voxel_diagonal_mm
    assert abs(lesion.long_axis_mm - 2 * a) <= diag
    assert abs(lesion.short_axis_mm - 2 * b) <= diag
    assert lesion.short_axis_mm <= lesion.long_axis_mm <= lesion.max_diameter_mm + 1e-9
    # Long axis on the central slice (or its neighbour on a grid without a slice through the centre).
    k_centre = g.to_index_zyx(np.array([centre]))[0, 0]
    assert abs(lesion.long_axis_slice - k_centre) <= 1
    e = np.asarray(lesion.long_axis_endpoints_lps_mm)
    assert np.linalg.norm(e[0] - e[1]) == pytest.approx(lesion.long_axis_mm)
    assert e[0, 2] == pytest.approx(e[1, 2])  # same axial slice
    # Long axis along x (L), short along y (P).
    assert abs(e[0, 0] - e[1, 0]) > abs(e[0, 1] - e[1, 1])
    s = np.asarray(lesion.short_axis_endpoints_lps_mm)
    assert abs(s[0, 1] - s[1, 1]) > abs(s[0, 0] - s[1, 0])


def test_recist_on_oblique_grid_matches_rotated_ellipse():
    # Rotate the grid about the slice normal only: slices stay axial, in-plane axes turn.
    d = Rotation.from_euler("z", 33, degrees=True).as_matrix()
    g = grid_around(22.0, (0.8, 0.8, 2.0), d, (0.0, 0.0, 0.0))
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    paint(lab, grid_lps(g), V.LIVER_TUMOR, (0, 0, 0), (19.0, 9.0, 7.0))
    lesion = measure(*vols(lab, g)).structures[0].lesions[0]
    assert abs(lesion.long_axis_mm - 38.0) <= g.voxel_diagonal_mm
    assert abs(lesion.short_axis_mm - 18.0) <= g.voxel_diagonal_mm


# ---- components and size filter ----------------------------------------------------------


def test_components_numbering_and_min_size():
    g = Geometry((30, 60, 60), (1.0, 1.0, 2.0))
    pts = grid_lps(g)
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    paint(lab, pts, V.LIVER_TUMOR, (15, 15, 30), (6, 6, 6))  # small
    paint(lab, pts, V.LIVER_TUMOR, (40, 40, 30), (10, 9, 8))  # large
    lab[2, 2, 2] = lab[3, 3, 3] = V.LIVER_TUMOR  # diagonal neighbours: ONE 26-connected lesion of 4 mm³
    lab[2, 50, 50] = V.LIVER_TUMOR  # a lone voxel of 2 mm³
    ct, lv = vols(lab, g)
    m = measure(ct, lv, min_lesion_mm3=3.0)
    s = m.structure(V.LIVER_TUMOR)
    vols_ml = [les.volume_ml for les in s.lesions]
    assert [les.id for les in s.lesions] == [1, 2, 3]
    assert vols_ml == sorted(vols_ml, reverse=True)
    assert s.lesions[2].volume_ml == pytest.approx(0.004)  # the diagonal pair, kept (4 ≥ 3 mm³)
    assert s.lesions[2].max_diameter_mm == pytest.approx(math.sqrt(1 + 1 + 4))
    # Class volume counts everything, filtered voxels included.
    assert s.volume_ml == pytest.approx(np.count_nonzero(lab) * 2.0 / 1000)
    assert len(measure(ct, lv, min_lesion_mm3=0.0).structure(V.LIVER_TUMOR).lesions) == 4
    assert len(measure(ct, lv).structure(V.LIVER_TUMOR).lesions) == 2  # default 10 mm³
    big_only = measure(ct, lv, min_lesion_mm3=1000.0).structure(V.LIVER_TUMOR)
    assert len(big_only.lesions) == 1 and big_only.lesions[0].volume_ml > 1.0


# ---- HU statistics and attenuation ---------------------------------------------------------


def _liver_scene(extra_gb=True, extra_ivc=True, spacing=(2.0, 2.0, 2.0), direction=None):
    g = grid_around(100.0, spacing, direction, (-40.0, 0.0, 30.0))
    pts = grid_lps(g)
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    paint(lab, pts, V.LIVER, (-40, 0, 30), (80, 60, 50))
    if extra_gb:
        paint(lab, pts, V.GALL_BLADDER, (-10, -45, 15), (10, 14, 12))
    if extra_ivc:
        paint(lab, pts, V.POSTCAVA, (-20, 40, 30), (8, 8, 90))
    return g, pts, lab


def test_hu_statistics_and_attenuation():
    g, pts, lab = _liver_scene()
    rng = np.random.default_rng(3)
    ct = np.full(g.shape_zyx, -1000, dtype=np.int16)
    ct[lab == V.LIVER] = 60
    values = {}
    for name, centre, hu in (("hypo", (-70, 0, 30), 20), ("iso", (0, 0, 50), 60 + ATTENUATION_THRESHOLD_HU),
                             ("hyper", (-60, 10, 0), 140)):
        inside = paint(lab, pts, V.LIVER_TUMOR, centre, (10, 10, 10))
        noise = rng.integers(-15, 16, int(inside.sum())) if name == "hyper" else 0
        ct[inside] = hu + noise
        values[name] = ct[inside].astype(float)
    m = measure(*vols(lab, g, ct), classes=[V.LIVER_TUMOR, V.LIVER])
    assert [s.class_index for s in m.structures] == [V.LIVER, V.LIVER_TUMOR]  # vocabulary order
    liver = m.structure(V.LIVER)
    assert liver.hu_mean == pytest.approx(60.0)  # lesion voxels are not liver voxels
    by_att = {}
    for les in m.structure(V.LIVER_TUMOR).lesions:
        assert les.host_class_index == V.LIVER and les.host_hu_mean == pytest.approx(60.0)
        by_att[les.attenuation] = les
    assert set(by_att) == {"hypoattenuating", "isoattenuating", "hyperattenuating"}
    v = values["hyper"]
    h = by_att["hyperattenuating"]
    assert h.hu_mean == pytest.approx(v.mean())
    assert h.hu_std == pytest.approx(v.std())
    assert (h.hu_min, h.hu_max, h.hu_median) == (v.min(), v.max(), np.median(v))
    assert by_att["hypoattenuating"].hu_mean == 20.0
    assert by_att["isoattenuating"].hu_mean == 60 + ATTENUATION_THRESHOLD_HU  # boundary is iso


def test_structure_totals_and_json():
    g, pts, lab = _liver_scene()
    paint(lab, pts, V.LIVER_TUMOR, (-70, 0, 30), (10, 10, 10))
    ct = np.where(lab == V.LIVER, 55, -5).astype(np.float32)
    m = measure(*vols(lab, g, ct))
    d = m.to_dict()
    text = json.dumps(d, allow_nan=False)  # plain JSON types only
    assert json.loads(text) == d
    assert set(d) == {"structures", "grid", "min_lesion_mm3"}
    assert [s["class_index"] for s in d["structures"]] == [V.GALL_BLADDER, V.LIVER, V.POSTCAVA, V.LIVER_TUMOR]
    liver = d["structures"][1]
    assert set(liver) == {"class_index", "name", "kind", "volume_ml", "voxel_count", "hu_mean", "lesions", "scan_edges"}
    assert liver["lesions"] == []
    assert liver["name"] == "Liver" and liver["kind"] == "organ" and liver["hu_mean"] == 55.0
    assert liver["volume_ml"] == pytest.approx(liver["voxel_count"] * 8 / 1000)
    assert d["structures"][2]["kind"] == "vessel"
    lesion = d["structures"][3]["lesions"][0]
    assert set(lesion) == {
        "id", "volume_ml", "max_diameter_mm", "long_axis_mm", "short_axis_mm", "long_axis_slice",
        "long_axis_endpoints_lps_mm", "short_axis_endpoints_lps_mm", "centroid_mm", "bbox_min_mm", "bbox_max_mm", "hu_mean", "hu_std",
        "hu_min", "hu_max", "hu_median", "host_class_index", "host_hu_mean", "attenuation", "location",
        "subregion", "laterality", "location_method", "scan_edges"}
    assert len(lesion["long_axis_endpoints_lps_mm"]) == 6 == len(lesion["short_axis_endpoints_lps_mm"]) and len(lesion["centroid_mm"]) == 3
    assert (lesion["laterality"], lesion["subregion"]) == ("", "right lobe")  # proto3: "" = none
    assert all(lo <= c <= hi for lo, c, hi in zip(lesion["bbox_min_mm"], lesion["centroid_mm"],
                                                  lesion["bbox_max_mm"]))
    assert d["grid"] == {"shape_zyx": list(g.shape_zyx), "spacing_xyz_mm": list(g.spacing_xyz_mm),
                         "origin_lps_mm": list(g.origin_lps_mm), "direction": list(g.direction.ravel())}
    assert d["min_lesion_mm3"] == 10.0


# ---- location rules --------------------------------------------------------------------------


@pytest.mark.parametrize("direction", [None, np.diag([-1.0, -1.0, 1.0]),
                                       Rotation.from_euler("zx", [20, 10], degrees=True).as_matrix()])
def test_pancreas_head_body_tail(direction):
    g = grid_around(80.0, (1.5, 1.5, 2.5), direction, (10.0, 0.0, 0.0))
    pts = grid_lps(g)
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    axis_rot = Rotation.from_euler("z", 15, degrees=True).as_matrix()  # long axis tilted in the axial plane
    paint(lab, pts, V.PANCREAS, (10, 0, 0), (65, 11, 9), axis_rot)
    u = axis_rot[:, 0]
    expected = {}
    for part, t in (("head", -40.0), ("body", 8.0), ("tail", 50.0)):
        c = np.array([10.0, 0.0, 0.0]) + t * u
        paint(lab, pts, V.PANCREAS_TUMOR, c, (7, 7, 6))
        expected[part] = c
    m = measure(*vols(lab, g), classes=[V.PANCREAS_TUMOR])
    got = {}
    for les in m.structure(V.PANCREAS_TUMOR).lesions:
        assert les.host_class_index == V.PANCREAS and les.laterality == "none"
        assert les.location == f"pancreatic {les.subregion}"
        assert les.location_method == "pancreas_pca_thirds"
        got[les.subregion] = les.centroid_mm
    assert set(got) == {"head", "body", "tail"}
    for part in got:
        assert np.linalg.norm(got[part] - expected[part]) < 2.0


def _kidney_scene():
    g = grid_around(100.0, (2.0, 2.0, 2.5), None, (0.0, 30.0, 0.0))
    pts = grid_lps(g)
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    paint(lab, pts, V.RIGHT_KIDNEY, (-60, 30, 0), (25, 22, 50))  # patient right = −x in LPS
    paint(lab, pts, V.LEFT_KIDNEY, (60, 30, 0), (25, 22, 50))
    return g, pts, lab


def test_kidney_side_and_poles():
    g, pts, lab = _kidney_scene()
    paint(lab, pts, V.KIDNEY_TUMOR, (-60, 30, 35), (9, 9, 9))  # right upper pole
    paint(lab, pts, V.KIDNEY_TUMOR, (60, 30, -36), (9, 9, 9))  # left lower pole
    paint(lab, pts, V.KIDNEY_CYST, (62, 30, 0), (8, 8, 8))  # left mid
    m = measure(*vols(lab, g))
    calls = {(les.location, les.subregion, les.laterality, les.host_class_index)
             for s in (m.structure(V.KIDNEY_TUMOR), m.structure(V.KIDNEY_CYST)) for les in s.lesions}
    assert calls == {
        ("right kidney, upper pole", "upper pole", "right", V.RIGHT_KIDNEY),
        ("left kidney, lower pole", "lower pole", "left", V.LEFT_KIDNEY),
        ("left kidney, mid", "mid", "left", V.LEFT_KIDNEY),
    }


def test_kidney_extent_includes_exophytic_lesion():
    g, pts, lab = _kidney_scene()
    # Right kidney spans S −50..50. A large exophytic tumour below it stretches the extent
    # to about −75..50; a small lesion at S = −20 is then "mid" (alone it would be lower pole).
    paint(lab, pts, V.KIDNEY_TUMOR, (-60, 30, -62), (16, 16, 14))
    paint(lab, pts, V.KIDNEY_CYST, (-60, 30, -20), (7, 7, 7))
    m = measure(*vols(lab, g), classes=[V.KIDNEY_CYST])
    (cyst,) = m.structure(V.KIDNEY_CYST).lesions
    assert cyst.host_class_index == V.RIGHT_KIDNEY
    assert cyst.subregion == "mid", cyst


def test_kidney_host_from_shell_and_fallback():
    g, pts, lab = _kidney_scene()
    paint(lab, pts, V.KIDNEY_TUMOR, (92, 30, 0), (6, 6, 6))  # touching the left kidney from outside
    paint(lab, pts, V.KIDNEY_TUMOR, (-10, -60, 80), (5, 5, 5))  # far from both: nearest centroid (right)
    lesions = measure(*vols(lab, g), classes=[V.KIDNEY_TUMOR]).structure(V.KIDNEY_TUMOR).lesions
    by_x = sorted(lesions, key=lambda les: les.centroid_mm[0])
    assert by_x[1].host_class_index == V.LEFT_KIDNEY and by_x[1].location_method == "kidney_s_thirds"
    assert by_x[0].host_class_index == V.RIGHT_KIDNEY
    assert "nearest_host_centroid" in by_x[0].location_method


def test_liver_lobes_by_cantlie_plane_and_fallback():
    g, pts, lab = _liver_scene()
    paint(lab, pts, V.LIVER_TUMOR, (-85, 0, 30), (8, 8, 8))
    paint(lab, pts, V.LIVER_TUMOR, (20, -10, 40), (8, 8, 8))
    # Right of Cantlie's plane (x ≈ −15 at y = 0) but left of the liver's x median (≈ −40):
    paint(lab, pts, V.LIVER_TUMOR, (-30, 0, 60), (6, 6, 6))
    m = measure(*vols(lab, g), classes=[V.LIVER_TUMOR])
    calls = {round(float(les.centroid_mm[0])): (les.location, les.location_method)
             for les in m.structure(V.LIVER_TUMOR).lesions}
    assert calls == {-85: ("liver, right lobe", "cantlie_plane"), 20: ("liver, left lobe", "cantlie_plane"),
                     -30: ("liver, right lobe", "cantlie_plane")}

    g, pts, lab = _liver_scene(extra_gb=False)
    paint(lab, pts, V.LIVER_TUMOR, (-85, 0, 30), (8, 8, 8))
    paint(lab, pts, V.LIVER_TUMOR, (20, -10, 40), (8, 8, 8))
    paint(lab, pts, V.LIVER_TUMOR, (-30, 0, 60), (6, 6, 6))
    m = measure(*vols(lab, g), classes=[V.LIVER_TUMOR])
    calls = {round(float(les.centroid_mm[0])): les for les in m.structure(V.LIVER_TUMOR).lesions}
    assert calls[-85].subregion == "right lobe" and calls[20].subregion == "left lobe"
    assert calls[-30].subregion == "left lobe"  # the median rule differs here, as expected
    for les in calls.values():
        assert les.location_method.startswith("liver_x_median") and "gall bladder" in les.location_method


def test_lung_side_and_other_hosts():
    g = grid_around(100.0, (2.0, 2.0, 2.5), None, (0.0, 0.0, 0.0))
    pts = grid_lps(g)
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    paint(lab, pts, V.RIGHT_LUNG, (-55, 0, 40), (40, 50, 55))
    paint(lab, pts, V.LEFT_LUNG, (55, 0, 40), (40, 50, 55))
    paint(lab, pts, V.COLON, (0, -20, -60), (60, 20, 15))
    paint(lab, pts, V.LUNG_TUMOR, (-60, 0, 50), (8, 8, 8))
    paint(lab, pts, V.LUNG_TUMOR, (50, 10, 20), (5, 5, 5))
    paint(lab, pts, V.COLON_TUMOR, (20, -20, -60), (8, 8, 8))
    m = measure(*vols(lab, g), classes=[V.LUNG_TUMOR, V.COLON_TUMOR])
    lungs = {les.location: les for les in m.structure(V.LUNG_TUMOR).lesions}
    assert set(lungs) == {"right lung", "left lung"}
    assert lungs["right lung"].laterality == "right" and lungs["right lung"].subregion == "right"
    assert lungs["left lung"].host_class_index == V.LEFT_LUNG and lungs["left lung"].laterality == "left"
    (colon,) = m.structure(V.COLON_TUMOR).lesions
    assert (colon.location, colon.subregion, colon.laterality, colon.host_class_index) == \
        ("colon", None, "none", V.COLON)


def test_location_rules_directly():
    pts = np.array([[x, 0.1 * x, 0.0] for x in np.linspace(-60, 60, 121)])
    assert location.pancreas_subregion(np.array([-50.0, -5, 0]), pts).subregion == "head"
    assert location.pancreas_subregion(np.array([0.0, 0, 0]), pts).subregion == "body"
    call = location.pancreas_subregion(np.array([55.0, 5, 0]), pts)
    assert call.location == "pancreatic tail" and call.margin == pytest.approx(55 / 120 + 0.5 - 2 / 3, abs=0.01)
    assert location.kidney_pole(np.array([0, 0, 45.0]), V.RIGHT_KIDNEY, (-50, 50)).location == \
        "right kidney, upper pole"
    assert location.kidney_pole(np.array([0, 0, -45.0]), V.LEFT_KIDNEY, (-50, 50)).location == \
        "left kidney, lower pole"
    gb, ivc = np.array([0.0, -40, 0]), np.array([0.0, 40, 0])
    assert location.liver_lobe(np.array([-5.0, 0, 9]), gb, ivc, None).subregion == "right lobe"
    assert location.liver_lobe(np.array([5.0, 0, -9]), gb, ivc, None).subregion == "left lobe"
    call = location.liver_lobe(np.array([5.0, 0, 0]), None, ivc, np.array([0.0, 10.0, 20.0]))
    assert call.subregion == "right lobe" and call.method == "liver_x_median (gall bladder is not segmented)"
    assert location.lung_side(V.LEFT_LUNG).location == "left lung"


# ---- bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    g = Geometry((8, 10, 12), (1.0, 1.0, 2.0))
    lab = np.zeros(g.shape_zyx, dtype=np.uint8)
    lab[2:5, 2:6, 2:7] = V.PANCREAS
    lab[3, 3, 3:5] = V.PANCREAS_TUMOR
    return g, lab


def test_grid_mismatch(small):
    g, lab = small
    ct = Volume(np.zeros(g.shape_zyx, np.int16), g)
    other = Geometry((8, 10, 13), (1.0, 1.0, 2.0))
    with pytest.raises(GeometryError, match=r"label map grid .* does not match the CT grid"):
        measure(ct, Volume(np.zeros(other.shape_zyx, np.uint8), other))
    shifted = Geometry(g.shape_zyx, (1.0, 1.0, 2.5))
    with pytest.raises(InvalidInputError, match="not its spacing"):
        measure(ct, Volume(lab, shifted))


@pytest.mark.parametrize("array_fn, pattern", [
    (lambda lab: lab.astype(np.float32) + 0.5, "non-integer value"),
    (lambda lab: lab > 0, "boolean"),
    (lambda lab: np.where(lab > 0, 40, 0).astype(np.int16), "value 40, outside"),
    (lambda lab: np.where(lab > 0, 33, 0).astype(np.uint8), "value 33, outside"),
    (lambda lab: np.where(lab > 0, -1, 0).astype(np.int32), "value -1, outside"),
    (lambda lab: np.where(lab > 0, np.nan, 0).astype(np.float64), "NaN"),
    (lambda lab: lab.astype(np.complex64), "dtype complex64"),
    (lambda lab: np.zeros_like(lab), "empty"),
])
def test_bad_label_maps(small, array_fn, pattern):
    g, lab = small
    ct = Volume(np.zeros(g.shape_zyx, np.int16), g)
    with pytest.raises(InvalidInputError, match=pattern):
        measure(ct, Volume(array_fn(lab), g))


def test_empty_label_map_with_named_classes_reports_them_absent(small):
    g, lab = small
    ct = Volume(np.zeros(g.shape_zyx, np.int16), g)
    out = measure(ct, Volume(np.zeros_like(lab), g), classes=[28, 6]).to_dict()
    assert [(s["class_index"], s["voxel_count"], s["lesions"]) for s in out["structures"]] == [(6, 0, []), (28, 0, [])]


def test_integral_float_and_wide_integer_labels_are_accepted(small):
    g, lab = small
    ct = Volume(np.zeros(g.shape_zyx, np.int16), g)
    ref = measure(ct, Volume(lab, g)).to_dict()
    assert measure(ct, Volume(lab.astype(np.float32), g)).to_dict() == ref
    assert measure(ct, Volume(lab.astype(np.int64), g)).to_dict() == ref


@pytest.mark.parametrize("classes, pattern", [
    ([33], "33 is not in the vocabulary"),
    ([0], "0 is not in the vocabulary"),
    ([V.PANCREAS, 2.5], "2.5 is not an integer class index"),
    ([True], "not an integer class index"),
    ([], "classes is empty"),
    ("pancreas", "list of class indices"),
])
def test_bad_classes(small, classes, pattern):
    g, lab = small
    with pytest.raises(InvalidInputError, match=pattern):
        measure(Volume(np.zeros(g.shape_zyx, np.int16), g), Volume(lab, g), classes=classes)


@pytest.mark.parametrize("value, pattern", [(-1.0, "≥ 0"), (float("nan"), "NaN"), (float("inf"), "finite"),
                                            ("10", "must be a number")])
def test_bad_min_size(small, value, pattern):
    g, lab = small
    with pytest.raises(InvalidInputError, match=pattern):
        measure(Volume(np.zeros(g.shape_zyx, np.int16), g), Volume(lab, g), min_lesion_mm3=value)


def test_bad_ct_dtype(small):
    g, lab = small
    with pytest.raises(InvalidInputError, match="CT has dtype bool"):
        measure(Volume(np.zeros(g.shape_zyx, bool), g), Volume(lab, g))


def test_absent_class_is_not_found_not_an_error(small):
    g, lab = small
    m = measure(Volume(np.zeros(g.shape_zyx, np.int16), g), Volume(lab, g),
                classes=[V.LIVER_TUMOR, V.PANCREAS_TUMOR, V.LIVER_TUMOR], min_lesion_mm3=0)
    assert [s.class_index for s in m.structures] == [V.LIVER_TUMOR, V.PANCREAS_TUMOR]
    absent = m.to_dict()["structures"][0]
    assert absent == {"class_index": V.LIVER_TUMOR, "name": "Liver Tumor", "kind": "lesion",
                      "volume_ml": 0.0, "voxel_count": 0, "hu_mean": 0.0, "lesions": [], "scan_edges": []}
    assert m.structures[0].hu_mean is None  # the dataclass says "none"; the dict follows proto3
    assert len(m.structure(V.PANCREAS_TUMOR).lesions) == 1


def test_nan_ct_inside_a_structure_is_refused(small):
    g, lab = small
    ct = np.zeros(g.shape_zyx, np.float32)
    ct[3, 3, 3] = np.nan  # inside the pancreas tumour
    with pytest.raises(InvalidInputError, match="CT holds NaN or infinite values inside Pancreas Tumor"):
        measure(Volume(ct, g), Volume(lab, g))
    ct[3, 3, 3] = 0
    ct[0, 0, 0] = np.nan  # background: not measured, not a problem
    assert measure(Volume(ct, g), Volume(lab, g)).structure(V.PANCREAS).hu_mean == 0.0


def test_dict_is_the_grpc_message():
    """to_dict() parses into radmesh.v1.MeasureResponse with no unknown field and comes back equal."""
    from google.protobuf import json_format

    from radmesh.v1 import measurement_pb2

    g, pts, lab = _kidney_scene()
    paint(lab, pts, V.KIDNEY_TUMOR, (-60, 30, 35), (9, 9, 9))
    ct = np.where(lab > 0, 150, -100).astype(np.int16)
    ct[lab == V.KIDNEY_TUMOR] = 40
    d = measure(*vols(lab, g, ct), classes=[V.KIDNEY_TUMOR, V.LIVER_TUMOR, V.RIGHT_KIDNEY]).to_dict()
    msg = json_format.ParseDict(d, measurement_pb2.MeasureResponse(), ignore_unknown_fields=False)
    back = json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    lesion = back["structures"][1]["lesions"][0]
    assert lesion["location"] == "right kidney, upper pole" and lesion["host_class_index"] == V.RIGHT_KIDNEY
    assert lesion["long_axis_endpoints_lps_mm"] == d["structures"][1]["lesions"][0]["long_axis_endpoints_lps_mm"]
    assert back["structures"][2] == {**d["structures"][2], "voxel_count": "0"}  # int64 as a JSON string
    assert back["structures"][0]["lesions"] == []  # proto3 cannot tell "no key" from "empty"


def test_core_module_documents_conventions():
    from radmesh.measurement import diameters
    assert "voxel centres" in diameters.__doc__ and "Maximum3DDiameter" in diameters.__doc__
    assert "isoattenuating" in core.__doc__ and ATTENUATION_THRESHOLD_HU == 10.0


# ---- phantoms (once radmesh.phantom.generator exists) -------------------------------------------

# How radmesh words a location from the truth's sub-region and side (truth.json words it
# tersely: "head", "right upper pole", "right lobe", "left"; the rules are the same).
_LOCATION_TEXT = {
    V.PANCREAS_TUMOR: lambda t: f"pancreatic {t['subregion']}",
    V.KIDNEY_TUMOR: lambda t: f"{t['laterality']} kidney, {t['subregion']}",
    V.KIDNEY_CYST: lambda t: f"{t['laterality']} kidney, {t['subregion']}",
    V.LIVER_TUMOR: lambda t: f"liver, {t['subregion']}",
    V.LUNG_TUMOR: lambda t: f"{t['laterality']} lung",
}


def _check_phantom(ph) -> int:
    m = measure(ph.ct, ph.labels, min_lesion_mm3=0.0)
    g = ph.labels.geometry
    truth_lesions = ph.truth["lesions"]
    assert truth_lesions, "the phantom has no lesions to check"
    checked = 0
    for t in truth_lesions:
        s = m.structure(int(t["class_index"]))
        assert len(s.lesions) == sum(1 for u in truth_lesions if u["class_index"] == t["class_index"])
        centre = np.asarray(t["centre_lps_mm"], dtype=float)
        les = min(s.lesions, key=lambda x: float(np.linalg.norm(x.centroid_mm - centre)))
        semi = np.asarray(t["semi_axes_mm"], dtype=float)
        assert np.linalg.norm(les.centroid_mm - centre) < max(semi.min() / 2, g.voxel_diagonal_mm)
        assert les.volume_ml == pytest.approx(t["voxel_volume_ml"])  # same voxels
        assert les.host_class_index == t["host_class_index"]
        assert les.max_diameter_mm <= t["max_diameter_mm"] + 1e-9  # voxel centres lie inside the ellipsoid
        if semi.min() >= 4 * max(g.spacing_xyz_mm):  # large relative to the voxel
            assert les.volume_ml == pytest.approx(float(t["volume_ml"]), rel=0.03)
            assert abs(les.max_diameter_mm - float(t["max_diameter_mm"])) <= g.voxel_diagonal_mm
            checked += 1
        if float(t["location_margin"]) > 0.1:
            assert (les.subregion, les.laterality) == (t["subregion"], t["laterality"]), (t, les)
            assert les.location == _LOCATION_TEXT[t["class_index"]](t)
    return checked


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_phantom_lesions_match_truth(seed):
    from radmesh.phantom.generator import PhantomConfig, generate

    # Every lesion kind the generator makes, on a small grid (seed 0 is oblique with 0.8 mm slices).
    ph = generate(seed, PhantomConfig(in_plane_size=160, lesions=(28, 26, 32, 30, 27, 27)))
    _check_phantom(ph)


@pytest.mark.slow
def test_phantom_full_size():
    from radmesh.phantom.generator import PhantomConfig, generate

    # 512² at 0.8 × 0.8 × 1 mm with several liver tumours: the lesions that are large
    # relative to the voxel get the analytic 3 % volume / one-voxel-diagonal diameter checks.
    # Lesion sizes are random, so go on to the next seed if none qualifies (seed 6 does today).
    config = PhantomConfig(spacing_xyz_mm=(0.8, 0.8, 1.0), slices=160, lesions=(27, 27, 27, 28, 26, 32, 30))
    checked = 0
    for seed in (6, 4, 7):
        checked += _check_phantom(generate(seed, config))
        if checked:
            break
    assert checked > 0


def test_phantom_oblique_anisotropic_grid_against_truth_and_pyradiomics():
    """The issue's bar on an oblique grid with 2.5 mm slices: analytic volume within 3 %,
    analytic and pyradiomics maximum diameters within one voxel diagonal."""
    from scipy import ndimage

    from radmesh.phantom.generator import PhantomConfig, generate

    config = PhantomConfig(in_plane_size=256, spacing_xyz_mm=(1.0, 1.0, 2.5), oblique=True,
                           lesions=(27, 27, 27, 28, 26, 32, 30))
    checked = 0
    for seed in (11, 12, 13, 14):
        ph = generate(seed, config)
        g = ph.labels.geometry
        assert g.is_oblique
        checked += _check_phantom(ph)
        m = measure(ph.ct, ph.labels, min_lesion_mm3=0.0)
        for s in m.structures:
            if not s.lesions:
                continue
            comps, _ = ndimage.label(ph.labels.array == s.class_index, structure=np.ones((3, 3, 3)))
            for les in s.lesions:
                k, j, i = np.round(g.to_index_zyx(les.centroid_mm[None, :])[0]).astype(int)
                comp_id = comps[k, j, i]  # an ellipsoid holds its centroid
                assert comp_id > 0
                pyr = pyradiomics_max3d(comps == comp_id, g)
                assert 0.0 <= pyr - les.max_diameter_mm <= g.voxel_diagonal_mm, (s.name, les.id)
        if checked >= 2:
            break
    assert checked >= 2


def test_scan_edges_name_where_a_structure_is_cut():
    """A structure reaching the first or last slice or the in-plane border is flagged, in patient terms:
    which slice end is superior follows the grid's direction (here slice 0 is the most superior)."""
    from radmesh.measurement.edges import edges_phrase

    direction = np.diag([1.0, 1.0, -1.0])  # k grows towards the feet
    g = Geometry(shape_zyx=(10, 20, 20), spacing_xyz_mm=(1.0, 1.0, 2.0), origin_lps_mm=(0.0, 0.0, 0.0),
                 direction=direction)
    lab = np.zeros(g.shape_zyx, np.uint8)
    lab[0:4, 5:15, 5:15] = V.LIVER          # cut at slice 0: the superior end
    lab[6:10, 5:9, 5:9] = V.SPLEEN          # cut at the last slice: inferior
    lab[4:6, 8:12, 0:3] = V.LIVER_TUMOR     # reaches the in-plane border
    lab[7:9, 12:15, 12:15] = V.KIDNEY_CYST  # inside: not cut
    ct = Volume(np.zeros(g.shape_zyx, np.int16), g)
    m = measure(ct, Volume(lab, g), min_lesion_mm3=1.0)
    edges = {s.class_index: s.scan_edges for s in m.structures}
    assert edges[V.LIVER] == ("superior",) and edges[V.SPLEEN] == ("inferior",)
    assert edges[V.LIVER_TUMOR] == ("field of view",) and edges[V.KIDNEY_CYST] == ()
    assert m.structure(V.LIVER_TUMOR).lesions[0].scan_edges == ("field of view",)
    assert m.to_dict()["structures"][0]["scan_edges"] == ["inferior"]  # spleen first, vocabulary order
    # The same map on a head-first grid (k towards the head): the ends swap names.
    up = Geometry(shape_zyx=g.shape_zyx, spacing_xyz_mm=g.spacing_xyz_mm, origin_lps_mm=(0.0, 0.0, 0.0))
    m2 = measure(Volume(ct.array, up), Volume(lab, up), min_lesion_mm3=1.0)
    assert m2.structure(V.LIVER).scan_edges == ("inferior",)
    # A two-slice slab: everything in it reaches both ends.
    lab2 = np.zeros((2, 20, 20), np.uint8)
    lab2[:, 5:10, 5:10] = V.LIVER
    slab = Geometry(shape_zyx=(2, 20, 20), spacing_xyz_mm=(1.0, 1.0, 2.0), origin_lps_mm=(0.0, 0.0, 0.0))
    m3 = measure(Volume(np.zeros((2, 20, 20), np.int16), slab), Volume(lab2, slab))
    assert m3.structure(V.LIVER).scan_edges == ("superior", "inferior")
    assert edges_phrase(("superior", "inferior")) == "the superior and inferior edges of the scan"
    assert edges_phrase(("field of view",)) == "the edge of the field of view"
