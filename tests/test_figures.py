"""Tests of the lesion key images on small phantoms measured by the real measurement core.

Expected pixels are computed here independently of ``figures.py``: a pixel centre's LPS
position is ``centre + (col - c)·s·u + (row - c)·s·r`` (the documented display
convention), its voxel is ``round(Dᵀ (lps - origin) / spacing)``, and its grey level is the
documented window applied to that voxel's HU. A mirrored plane, a swapped axis, index-space
sampling of an oblique grid or the wrong window would each fail ``test_planes_show_the_ct``.
"""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from radmesh.common import vocabulary as V
from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Geometry, Volume
from radmesh.measurement.core import measure
from radmesh.phantom.generator import PhantomConfig, generate
from radmesh.report import figures as F
from radmesh.report.figures import figure_file_names, lesion_figures

LESIONS = (V.PANCREAS_TUMOR, V.LIVER_TUMOR, V.LUNG_TUMOR)
PREVIEW = Path("/tmp/figures-preview")
WIDTH, HEIGHT = 320, 320 + 24  # documented: 320 × 320 image under a 24 px caption strip
DISPLAY = {  # plane: (row direction, column direction), LPS unit vectors
    "axial": ((0, 1, 0), (1, 0, 0)),
    "coronal": ((0, 0, -1), (1, 0, 0)),
    "sagittal": ((0, 0, -1), (0, 1, 0)),
}


def _case(seed: int, oblique: bool):
    ph = generate(seed, PhantomConfig(in_plane_size=128, spacing_xyz_mm=(2.5, 2.5, 3.0), slices=60,
                                      oblique=oblique, lesions=LESIONS))
    m = measure(ph.ct, ph.labels, classes=list(LESIONS)).to_dict()
    lesions = {s["class_index"]: s["lesions"][0] for s in m["structures"] if s["lesions"]}
    assert sorted(lesions) == sorted(LESIONS), "the phantom should hold one lesion of each class"
    return ph, lesions, {c: lesion_figures(ph.ct, ph.labels, c, les) for c, les in lesions.items()}


@pytest.fixture(scope="module")
def straight():
    return _case(3, oblique=False)


@pytest.fixture(scope="module")
def oblique():
    ph, lesions, figs = _case(3, oblique=True)
    assert ph.ct.geometry.is_oblique
    return ph, lesions, figs


def _image(png: bytes) -> np.ndarray:
    """(320, 320, 3) uint8: the figure without its caption strip."""
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.mode == "RGB" and im.size == (WIDTH, HEIGHT)
    return np.asarray(im)[HEIGHT - WIDTH:]


def _colour(img: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.all(img == np.asarray(rgb, dtype=np.uint8), axis=-1)


def _mm_per_px(lesion) -> float:
    return max(80.0, 3.0 * lesion["max_diameter_mm"]) / 320


def _centre(lesion) -> np.ndarray:
    return np.asarray(lesion["long_axis_endpoints_lps_mm"], dtype=float).reshape(2, 3).mean(axis=0)


def _expected_grey(ct: Volume, lesion, plane: str, window: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(grey, inside): the documented rendering of each pixel's nearest voxel, and which pixels are in the CT."""
    g = ct.geometry
    r, u = (np.asarray(v, dtype=float) for v in DISPLAY[plane])
    off = (np.arange(320) - 159.5) * _mm_per_px(lesion)
    lps = _centre(lesion) + off[:, None, None] * r + off[None, :, None] * u
    ijk = (lps - np.asarray(g.origin_lps_mm)) @ g.direction / np.asarray(g.spacing_xyz_mm)  # Dᵀ(p − o) / s
    ijk = np.rint(ijk).astype(int)
    nx, ny, nz = g.shape_zyx[::-1]
    inside = (ijk >= 0).all(-1) & (ijk < (nx, ny, nz)).all(-1)
    i, j, k = np.moveaxis(np.clip(ijk, 0, (nx - 1, ny - 1, nz - 1)), -1, 0)
    hu = ct.array[k, j, i].astype(float)
    w, lvl = window
    return np.clip((hu - (lvl - w / 2)) / w, 0, 1) * 255, inside


def _mean_error(img: np.ndarray, expected: np.ndarray, inside: np.ndarray) -> float:
    grey = (img[..., 0] == img[..., 1]) & (img[..., 1] == img[..., 2])  # overlays are coloured
    keep = grey & inside
    keep[:24], keep[-24:], keep[:, :24], keep[:, -24:] = False, False, False, False  # orientation letters
    return float(np.mean(np.abs(img[..., 0][keep].astype(float) - expected[keep])))


# ---- the files ----------------------------------------------------------------------

def test_three_pngs_with_documented_size_and_names(straight, tmp_path):
    _, lesions, figs = straight
    for c, pngs in figs.items():
        assert set(pngs) == {"axial", "coronal", "sagittal"}
        names = figure_file_names(c, lesions[c]["id"])
        for plane, png in pngs.items():
            _image(png)
            (tmp_path / names[plane]).write_bytes(png)
    assert figure_file_names(V.PANCREAS_TUMOR, 1) == {
        "axial": "pancreas_tumor-1-axial.png", "coronal": "pancreas_tumor-1-coronal.png",
        "sagittal": "pancreas_tumor-1-sagittal.png"}
    assert (F.SIZE_PX, F.SIZE_PX + F.CAPTION_PX) == (WIDTH, HEIGHT)
    # One set where a person can look at it.
    PREVIEW.mkdir(parents=True, exist_ok=True)
    for c in LESIONS:
        for name in figure_file_names(c, lesions[c]["id"]).values():
            shutil.copyfile(tmp_path / name, PREVIEW / name)


def test_deterministic_and_without_metadata(straight):
    ph, lesions, figs = straight
    les = lesions[V.PANCREAS_TUMOR]
    again = lesion_figures(ph.ct, ph.labels, V.PANCREAS_TUMOR, les)
    assert again == figs[V.PANCREAS_TUMOR]
    png = again["axial"]
    chunks, pos = set(), 8
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunks.add(kind.decode())
        pos += 12 + n
    assert chunks <= {"IHDR", "IDAT", "IEND"}, chunks  # no text or time chunks
    # The image number is the caption's: default long_axis_slice + 1, another one changes the bytes.
    assert lesion_figures(ph.ct, ph.labels, V.PANCREAS_TUMOR, les,
                          image_number=les["long_axis_slice"] + 1) == again
    other = lesion_figures(ph.ct, ph.labels, V.PANCREAS_TUMOR, les, image_number=les["long_axis_slice"] + 7)
    assert all(other[p] != again[p] for p in again)


# ---- what is drawn -------------------------------------------------------------------

@pytest.mark.parametrize("case", ["straight", "oblique"])
def test_outlines_surround_the_image_centre(case, request):
    """The lesion outline lies around the centre (the long-axis midpoint), within the lesion's size."""
    _, lesions, figs = request.getfixturevalue(case)
    for c, pngs in figs.items():
        les = lesions[c]
        reach = int((les["max_diameter_mm"] / 2 + 4.0) / _mm_per_px(les)) + 3  # + a voxel, + the outline
        for plane, png in pngs.items():
            img = _image(png)
            red = _colour(img, F.LESION_RGB)
            ys, xs = np.nonzero(red)
            assert ys.size > 20, f"{V.get(c).name} {plane}: no lesion outline"
            assert np.abs(ys - 159.5).max() <= reach and np.abs(xs - 159.5).max() <= reach, \
                f"{V.get(c).name} {plane}: lesion outline strays from the centre"
            box = red[160 - reach:160 + reach, 160 - reach:160 + reach]
            h = reach  # the outline has pixels in each quadrant around the centre
            assert box[:h, :h].any() and box[:h, h:].any() and box[h:, :h].any() and box[h:, h:].any()
            # The inside of the outline is not filled: its centre pixel is CT grey or a measurement line.
            assert not red[158:162, 158:162].all()
            assert _colour(img, F.HOST_RGB).sum() > 20, f"{V.get(c).name} {plane}: no host outline"
            assert _colour(img, F.MEASURE_RGB).sum() > 20, f"{V.get(c).name} {plane}: no measurement drawn"


def test_axial_axes_have_the_measured_length(straight):
    """The yellow drawing spans the long axis: its extent matches long_axis_mm (± ticks, labels aside)."""
    _, lesions, figs = straight
    les = lesions[V.LIVER_TUMOR]
    img = _image(figs[V.LIVER_TUMOR]["axial"])
    ends = np.asarray(les["long_axis_endpoints_lps_mm"]).reshape(2, 3)
    s, c = _mm_per_px(les), _centre(les)
    px = np.stack([(ends[:, 0] - c[0]) / s + 159.5, (ends[:, 1] - c[1]) / s + 159.5], axis=1)
    yellow = _colour(img, F.MEASURE_RGB)
    for x, y in px:  # a yellow line end at each projected endpoint
        row, col = round(y), round(x)
        assert yellow[row - 2:row + 3, col - 2:col + 3].any()


@pytest.mark.parametrize("case", ["straight", "oblique"])
def test_planes_show_the_ct(case, request):
    """Every plane is the windowed CT in the documented orientation, sampled in patient space."""
    ph, lesions, figs = request.getfixturevalue(case)
    for c, pngs in figs.items():
        window = (1500.0, -600.0) if c == V.LUNG_TUMOR else (400.0, 50.0)
        wrong = (400.0, 50.0) if c == V.LUNG_TUMOR else (1500.0, -600.0)
        for plane, png in pngs.items():
            img = _image(png)
            expected, inside = _expected_grey(ph.ct, lesions[c], plane, window)
            err = _mean_error(img, expected, inside)
            mirrored = min(_mean_error(img, expected[:, ::-1], inside[:, ::-1]),
                           _mean_error(img, expected[::-1], inside[::-1]))
            other = _mean_error(img, *_expected_grey(ph.ct, lesions[c], plane, wrong))
            where = f"{case} {V.get(c).name} {plane}"
            # Linear vs nearest interpolation of noisy CT costs a few grey levels; text strokes a few more.
            assert err < 12, f"{where}: mean error {err:.1f} grey levels"
            assert mirrored > 2 * err, f"{where}: a mirrored plane fits as well ({mirrored:.1f} vs {err:.1f})"
            assert other > 4 * err, f"{where}: the other window fits as well ({other:.1f} vs {err:.1f})"
            if case == "oblique":  # index-space planes: the same grid pretended axis-aligned at the lesion
                g, cen = ph.ct.geometry, _centre(lesions[c])
                at = g.to_index_zyx(cen[None])[0][::-1] * np.asarray(g.spacing_xyz_mm)
                flat = Volume(ph.ct.array, Geometry(g.shape_zyx, g.spacing_xyz_mm, tuple(cen - at)))
                index_space = _mean_error(img, *_expected_grey(flat, lesions[c], plane, window))
                assert index_space > 1.5 * err, f"{where}: index-space sampling fits as well"
            away = np.zeros_like(inside)
            away[24:-24, 24:-24] = True  # orientation letters may sit outside the scan
            assert (img[~inside & away] == 0).all(), f"{where}: outside the scan is not black"


def test_lung_lesion_uses_the_lung_window(straight):
    """Aerated lung next to the nodule is mid-grey (W1500/L-600), where W400/L50 would make it black."""
    ph, lesions, figs = straight
    les = lesions[V.LUNG_TUMOR]
    img = _image(figs[V.LUNG_TUMOR]["axial"])
    k = les["long_axis_slice"]
    g = ph.ct.geometry
    lung = ph.labels.array[k] == les["host_class_index"]
    lung = ndimage.binary_erosion(lung, iterations=2)  # clear of the pleura and the nodule
    j, i = np.nonzero(lung)
    lps = g.to_lps(np.stack([np.full_like(j, k), j, i], axis=1))
    s, c = _mm_per_px(les), _centre(les)
    col, row = (lps[:, 0] - c[0]) / s + 159.5, (lps[:, 1] - c[1]) / s + 159.5
    ok = (col > 30) & (col < 290) & (row > 30) & (row < 290)
    assert ok.sum() > 20, "no aerated lung in view"
    grey = img[np.rint(row[ok]).astype(int), np.rint(col[ok]).astype(int), 0].astype(float)
    hu = ph.ct.array[k, j[ok], i[ok]].astype(float)
    assert np.median(hu) < -700  # it is aerated lung
    lung_window = np.clip((hu + 1350) / 1500, 0, 1) * 255
    assert np.median(np.abs(grey - lung_window)) < 8
    assert np.median(grey) > 40  # the abdomen window would clip all of it to 0


# ---- bad input -------------------------------------------------------------------------

def test_bad_inputs_are_refused_with_a_message(straight):
    ph, lesions, _ = straight
    ct, lab, les = ph.ct, ph.labels, lesions[V.PANCREAS_TUMOR]
    g = ct.geometry
    shifted = Volume(lab.array, Geometry(g.shape_zyx, g.spacing_xyz_mm,
                                         tuple(np.asarray(g.origin_lps_mm) + 5.0), g.direction))
    cases = [
        ((ct, Volume(lab.array[:-1], Geometry(lab.array[:-1].shape, g.spacing_xyz_mm)), 28, les),
         "does not match the CT grid"),
        ((ct, shifted, 28, les), "not its spacing, origin or direction"),
        ((ct.array, lab, 28, les), "ct must be a radmesh Volume"),
        ((ct, lab, V.PANCREAS, les), "Pancreas\\) is not a lesion class"),
        ((ct, lab, 99, les), "not in the vocabulary"),
        ((ct, lab, True, les), "class_index must be an integer"),
        ((ct, lab, 28, {k: v for k, v in les.items() if k != "long_axis_endpoints_lps_mm"}),
         "missing keys \\['long_axis_endpoints_lps_mm'\\]"),
        ((Volume(ct.array > 0, g), lab, 28, les), "CT has dtype bool"),
        ((ct, Volume(lab.array > 0, g), 28, les), "label map is boolean"),
        ((ct, lab, 28, [1, 2, 3]), "lesion must be one lesion dict"),
        ((ct, lab, 28, {**les, "long_axis_mm": "16.2"}), "long_axis_mm must be a finite number"),
        ((ct, lab, 28, {**les, "bbox_min_mm": [1.0, 2.0]}), "bbox_min_mm must be 3 finite numbers"),
        ((ct, lab, 28, {**les, "short_axis_endpoints_lps_mm": [float("nan")] * 6}),
         "short_axis_endpoints_lps_mm must be 6 finite"),
    ]
    for args, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            lesion_figures(*args)
    with pytest.raises(InvalidInputError, match="image_number must be a positive integer"):
        lesion_figures(ct, lab, 28, les, image_number=0)
    with pytest.raises(InvalidInputError, match="not in the vocabulary"):
        figure_file_names(99, 1)
