"""Key images of one measured lesion: axial, coronal and sagittal PNGs for the chat UI and report folders.

``lesion_figures(ct, labels, class_index, lesion)`` takes a CT (HU) and a label map of
vocabulary indices on the same grid (both (z, y, x) :class:`~radmesh.common.volume.Volume`),
and one lesion dict of ``measure(...).to_dict()``, and returns
``{"axial": png, "coronal": png, "sagittal": png}``. Each PNG is ``SIZE_PX`` × ``SIZE_PX``
pixels of image under a ``CAPTION_PX`` caption strip, so (width, height) = (320, 344).

Conventions
-----------
- Planes are sampled in patient space (LPS mm), not in index space, so an oblique grid gives
  true axial / coronal / sagittal planes: CT by linear, labels by nearest-neighbour
  interpolation (``scipy.ndimage.map_coordinates``) on square pixels.
- All three planes pass through the midpoint of the RECIST long axis, which is also the
  image centre; the field of view is max(80 mm, 3 × ``max_diameter_mm``) square.
- Radiological display: axial rows run +P (posterior down), columns +L (the patient's left
  on the image right); coronal rows -S (superior up), columns +L; sagittal rows -S,
  columns +P (anterior on the left). Orientation letters sit at the four edges.
- Window W400/L50 (abdomen), W1500/L-600 (lung) for Lung Tumor. Pixels beyond the scan are
  black in either window, and outlines stop at the scan's edge.
- Overlay, no fill: a 2 px outline of the lesion class's voxels (red), a 1 px outline of
  the host organ (cyan). Axial: long and short axes (yellow) with end ticks and their
  lengths. Coronal / sagittal: the craniocaudal extent (bbox S extent of the voxel
  centres, as ``measure`` defines it) as a vertical bar with its length, and a tick at
  the long-axis plane pointing at the lesion.
- Caption: "<class> #<id> · <plane> · image <n> · <long> x <short> mm"; the bundled font
  (Pillow's Aileron) has no "×" glyph, hence "x". PNGs carry no metadata, so the same
  inputs give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.labels import label_array
from radmesh.common.volume import Geometry, Volume

__all__ = ["CAPTION_PX", "PLANES", "SIZE_PX", "figure_file_names", "lesion_figures"]

SIZE_PX = 320
CAPTION_PX = 24
MIN_FOV_MM = 80.0
ABDOMEN_WINDOW = (400.0, 50.0)  # (width, level) HU
LUNG_WINDOW = (1500.0, -600.0)
AIR_HU = -1024.0  # CT interpolated across the scan edge blends into air
LESION_RGB, HOST_RGB, MEASURE_RGB = (255, 48, 48), (0, 200, 255), (255, 225, 0)
_SMALL, _LETTERS = ImageFont.load_default(size=12), ImageFont.load_default(size=14)  # Pillow's bundled font

_L, _P, _S = np.eye(3)
# plane: (row direction, column direction) as LPS unit vectors, and letters (top, bottom, left, right)
PLANES: dict[str, tuple[np.ndarray, np.ndarray, str]] = {
    "axial": (_P, _L, "APRL"),
    "coronal": (-_S, _L, "SIRL"),
    "sagittal": (-_S, _P, "SIAP"),
}
_SCALARS = ("id", "long_axis_mm", "short_axis_mm", "long_axis_slice", "max_diameter_mm", "host_class_index")
_VECTORS = {"long_axis_endpoints_lps_mm": 6, "short_axis_endpoints_lps_mm": 6, "bbox_min_mm": 3, "bbox_max_mm": 3}


def figure_file_names(class_index: int, lesion_id: int) -> dict[str, str]:
    """{"axial": "pancreas_tumor-1-axial.png", ...}: file names for the three figures."""
    slug = vocab.get(class_index).slug
    return {plane: f"{slug}-{int(lesion_id)}-{plane}.png" for plane in PLANES}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _vector(lesion: Mapping[str, Any], key: str) -> np.ndarray:
    """A flat float vector of ``_VECTORS[key]`` finite numbers (LPS mm)."""
    n = _VECTORS[key]
    try:
        v = np.asarray(lesion[key], dtype=np.float64).ravel()
    except (TypeError, ValueError):
        v = np.empty(0)
    if v.size != n or not np.all(np.isfinite(v)):
        raise InvalidInputError(f"lesion {key} must be {n} finite numbers (LPS mm), got {lesion[key]!r}")
    return v


def _check(ct: Any, labels: Any, class_index: Any, lesion: Any, image_number: Any) -> vocab.ClassInfo:
    for name, v in (("ct", ct), ("labels", labels)):
        if not isinstance(v, Volume):
            raise InvalidInputError(f"{name} must be a radmesh Volume, got {type(v).__name__}")
    ct.geometry.require_match(labels.geometry, what="label map", ref="CT")
    if ct.array.dtype == np.bool_ or not (np.issubdtype(ct.array.dtype, np.integer)
                                          or np.issubdtype(ct.array.dtype, np.floating)):
        raise InvalidInputError(f"CT has dtype {ct.array.dtype}; expected Hounsfield units (integers or floats)")
    if not _is_int(class_index):
        raise InvalidInputError(f"class_index must be an integer vocabulary index, got {class_index!r}")
    info = vocab.get(class_index)
    if not info.is_lesion:
        raise InvalidInputError(f"class {info.index} ({info.name}) is not a lesion class; "
                                f"figures are drawn for lesion classes {list(vocab.LESION_INDICES)}")
    if not isinstance(lesion, Mapping):
        raise InvalidInputError(f"lesion must be one lesion dict of measure(...).to_dict(), "
                                f"got {type(lesion).__name__}")
    missing = [k for k in (*_SCALARS, *_VECTORS) if k not in lesion]
    if missing:
        raise InvalidInputError(f"lesion dict is missing keys {missing}; pass one lesion of measure(...).to_dict()")
    for key in _SCALARS:
        v = lesion[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) or v < 0:
            raise InvalidInputError(f"lesion {key} must be a finite number ≥ 0, got {v!r}")
    for key in _VECTORS:
        _vector(lesion, key)
    if image_number is not None and not (_is_int(image_number) and image_number >= 1):
        raise InvalidInputError(f"image_number must be a positive integer or None, got {image_number!r}")
    return info


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Boundary pixels of a (rows, cols) mask: 1 px inside (width 1) or straddling the edge (width 2).

    ``border_value=1`` keeps a structure cut by the image edge from being outlined along it."""
    inner = mask & ~ndimage.binary_erosion(mask, border_value=1)
    return inner | (ndimage.binary_dilation(mask) & ~mask) if width > 1 else inner


class _Plane:
    """A SIZE_PX² plane through ``geometry``: pixel (row, col) centre at ``centre + (col-c)·s·u + (row-c)·s·r``
    (LPS mm; r, u the row and column unit vectors, s mm per pixel, c the central pixel)."""

    def __init__(self, centre: np.ndarray, rows: np.ndarray, cols: np.ndarray, mm_per_px: float,
                 geometry: Geometry) -> None:
        self.centre, self.r, self.u, self.s = centre, rows, cols, mm_per_px
        self.c = (SIZE_PX - 1) / 2.0
        g = (np.arange(SIZE_PX) - self.c) * mm_per_px
        lps = centre + g[:, None, None] * rows + g[None, :, None] * cols
        idx = geometry.to_index_zyx(lps.reshape(-1, 3))  # (SIZE_PX², 3) fractional (k, j, i), row-major
        self.idx = idx.T
        n = np.asarray(geometry.shape_zyx)
        self.outside = np.any((idx < -0.5) | (idx > n - 0.5), axis=1).reshape(SIZE_PX, SIZE_PX)

    def sample(self, array: np.ndarray, order: int, mode: str) -> np.ndarray:
        """(SIZE_PX, SIZE_PX) plane of a (z, y, x) array: order 1 (float32) or 0 (the array's dtype);
        ``mode`` as map_coordinates' (``"constant"`` fills with AIR_HU)."""
        out = np.float32 if order else array.dtype
        return ndimage.map_coordinates(array, self.idx, output=out, order=order, mode=mode,
                                       cval=AIR_HU).reshape(SIZE_PX, SIZE_PX)

    def px(self, lps: np.ndarray) -> np.ndarray:
        """(..., 3) LPS mm → (..., 2) (x = col, y = row) pixels, projected onto the plane."""
        d = np.asarray(lps, dtype=np.float64) - self.centre
        return np.stack([d @ self.u / self.s + self.c, d @ self.r / self.s + self.c], axis=-1)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label(draw: ImageDraw.ImageDraw, text: str, anchors: list[tuple[np.ndarray, np.ndarray]],
           taken: list[tuple[float, ...]], gap: float) -> None:
    """Write ``text`` ``gap`` px past the first anchor (point, outward unit direction) whose box lies in
    the image and clear of ``taken`` (boxes already used, appended to); else past the first, clamped."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=_SMALL, stroke_width=2)
    w, h = right - left, bottom - top
    boxes = []
    for point, d in anchors:
        cx, cy = point + d * (gap + abs(d[0]) * w / 2 + abs(d[1]) * h / 2)  # box centre, just past the point
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    fits = [x for x in boxes
            if min(x[:2]) >= 2 and max(x[2:]) <= SIZE_PX - 2 and not any(_overlaps(x, o) for o in taken)]
    x0, y0 = fits[0][:2] if fits else np.clip(boxes[0][:2], 2, (SIZE_PX - 2 - w, SIZE_PX - 2 - h))
    taken.append((x0, y0, x0 + w, y0 + h))
    draw.text((x0 - left, y0 - top), text, font=_SMALL, fill=MEASURE_RGB, stroke_width=2, stroke_fill=(0, 0, 0))


def _direction(d: np.ndarray, default: tuple[float, float]) -> np.ndarray:
    norm = float(np.hypot(*d))
    return d / norm if norm > 1e-6 else np.asarray(default, dtype=np.float64)


def _bar(draw: ImageDraw.ImageDraw, a: np.ndarray, b: np.ndarray, tick_px: float = 4.0) -> None:
    """A 2 px line from a to b ((x, y) pixels) with perpendicular end ticks of ±tick_px."""
    d = _direction(b - a, (0.0, 1.0))
    n = np.array([-d[1], d[0]])
    draw.line([tuple(a), tuple(b)], fill=MEASURE_RGB, width=2)
    for e in (a, b):
        draw.line([tuple(e - n * tick_px), tuple(e + n * tick_px)], fill=MEASURE_RGB, width=2)


def _axes(draw: ImageDraw.ImageDraw, plane: _Plane, lesion: Mapping[str, Any], taken: list, gap: float) -> None:
    """Axial: RECIST long and short axes, endpoints projected onto the plane, each with its length."""
    for key, mm_key, default in (("long_axis_endpoints_lps_mm", "long_axis_mm", (1.0, 0.0)),
                                 ("short_axis_endpoints_lps_mm", "short_axis_mm", (0.0, 1.0))):
        a, b = plane.px(_vector(lesion, key).reshape(2, 3))
        _bar(draw, a, b)
        d = _direction(b - a, default)
        n = np.array([-d[1], d[0]])
        _label(draw, f"{float(lesion[mm_key]):.1f} mm", [(b, d), (a, -d), (b, n), (b, -n), (a, n), (a, -n)], taken, gap)


def _extent(draw: ImageDraw.ImageDraw, plane: _Plane, lesion: Mapping[str, Any], taken: list) -> None:
    """Coronal / sagittal: the bbox S extent as a vertical bar beside the lesion, a tick at the long-axis plane."""
    lo, hi = _vector(lesion, "bbox_min_mm"), _vector(lesion, "bbox_max_mm")
    s_axis = _vector(lesion, "long_axis_endpoints_lps_mm")[[2, 5]].mean()
    row = {s: float(plane.px(np.r_[plane.centre[:2], s])[1]) for s in (lo[2], hi[2], s_axis)}
    cols = sorted(float(plane.px(v)[0]) for v in (lo, hi))
    # Just right of the lesion, or left of it where the label would not fit; the tick points at the lesion.
    x, toward = (cols[1] + 8, -1.0) if cols[1] + 8 < SIZE_PX - 60 else (cols[0] - 8, 1.0)
    _bar(draw, np.array([x, row[hi[2]]]), np.array([x, row[lo[2]]]))
    draw.line([(x, row[s_axis]), (x + toward * 10, row[s_axis])], fill=MEASURE_RGB, width=2)
    mid = np.array([x, (row[hi[2]] + row[lo[2]]) / 2])
    _label(draw, f"{hi[2] - lo[2]:.1f} mm", [(mid, np.array([-toward, 0.0])), (mid, np.array([toward, 0.0]))],
           taken, 4.0)


def _render(plane: _Plane, name: str, ct: Volume, labels: Volume, class_index: int, host: int,
            lesion: Mapping[str, Any], caption: str) -> bytes:
    width, level = LUNG_WINDOW if class_index == vocab.LUNG_TUMOR else ABDOMEN_WINDOW
    grey = np.clip((plane.sample(ct.array, 1, "constant") - (level - width / 2)) / width, 0.0, 1.0)
    grey = np.rint(grey * 255).astype(np.uint8)
    grey[plane.outside] = 0  # in the lung window air is grey; beyond the scan must read as "no data"
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    # Labels continue past the scan edge ("nearest") so an organ cut by it gets no outline there.
    lab = plane.sample(labels.array, 0, "nearest")
    if host:  # drawn first: where lesion and host touch, the lesion outline covers the host's
        rgb[_outline(lab == host, 1) & ~plane.outside] = HOST_RGB
    rgb[_outline(lab == class_index, 2) & ~plane.outside] = LESION_RGB

    view = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(view)
    taken: list[tuple[float, ...]] = []
    edges = ((SIZE_PX / 2, 10), (SIZE_PX / 2, SIZE_PX - 10), (10, SIZE_PX / 2), (SIZE_PX - 10, SIZE_PX / 2))
    for letter, xy in zip(PLANES[name][2], edges, strict=True):  # top, bottom, left, right
        draw.text(xy, letter, font=_LETTERS, anchor="mm", fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
        taken.append(draw.textbbox(xy, letter, font=_LETTERS, anchor="mm", stroke_width=2))
    if name == "axial":  # axis endpoints are voxel centres, half a voxel inside the outline: labels start past it
        _axes(draw, plane, lesion, taken, 4.0 + 0.5 * max(ct.geometry.spacing_xyz_mm) / plane.s)
    else:
        _extent(draw, plane, lesion, taken)

    img = Image.new("RGB", (SIZE_PX, SIZE_PX + CAPTION_PX), (16, 16, 16))
    img.paste(view, (0, CAPTION_PX))
    draw, size = ImageDraw.Draw(img), 13
    while size > 8 and draw.textlength(caption, font=ImageFont.load_default(size=size)) > SIZE_PX - 8:
        size -= 1  # a long class name: shrink until the caption fits the strip
    draw.text((SIZE_PX / 2, CAPTION_PX / 2), caption, font=ImageFont.load_default(size=size), anchor="mm",
              fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)  # no pnginfo: no text or time chunks, so bytes are reproducible
    return buf.getvalue()


def lesion_figures(ct: Volume, labels: Volume, class_index: int, lesion: Mapping[str, Any],
                   image_number: int | None = None) -> dict[str, bytes]:
    """{"axial": png, "coronal": png, "sagittal": png} key images of one lesion.

    ct:           CT in HU, (z, y, x) on any (oblique) grid.
    labels:       vocabulary class indices on exactly the CT's grid.
    class_index:  the lesion's class (a lesion class of the vocabulary, e.g. 28 Pancreas Tumor).
    lesion:       one lesion dict of ``measure(ct, labels).to_dict()`` (LPS mm, lengths mm).
    image_number: the image number shown in the caption; default ``long_axis_slice + 1``.

    Each PNG is RGB, SIZE_PX wide and SIZE_PX + CAPTION_PX tall (see the module docstring).
    Raises InvalidInputError for grids that differ, a non-lesion or unknown class, or a lesion
    dict that lacks keys or holds malformed values.
    """
    info = _check(ct, labels, class_index, lesion, image_number)
    labels = Volume(label_array(labels.array), labels.geometry)
    centre = _vector(lesion, "long_axis_endpoints_lps_mm").reshape(2, 3).mean(axis=0)
    mm_per_px = max(MIN_FOV_MM, 3.0 * float(lesion["max_diameter_mm"])) / SIZE_PX
    number = int(lesion["long_axis_slice"]) + 1 if image_number is None else int(image_number)
    size = f"{float(lesion['long_axis_mm']):.1f} x {float(lesion['short_axis_mm']):.1f} mm"
    return {name: _render(_Plane(centre, rows, cols, mm_per_px, ct.geometry), name, ct, labels, info.index,
                          int(lesion["host_class_index"]), lesion,
                          f"{info.name} #{int(lesion['id'])} · {name} · image {number} · {size}")
            for name, (rows, cols, _) in PLANES.items()}
