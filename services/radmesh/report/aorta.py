"""The aortic diameter from a label map: the largest minimum caliper width of its axial sections.

The measurement service reports the aorta's volume and mean HU, not its
diameter, and the aneurysm thresholds (:func:`radmesh.report.rules.abdominal_aortic_aneurysm`)
need a diameter. The SVS guideline (Chaikof EL et al. J Vasc Surg 2018;67:2-77)
asks for the maximum diameter measured outer wall to outer wall perpendicular to
the path of the aorta. This module measures that from the label map alone:

- **Cross-sections.** Each axial slice (array index ``k``, the slices the image
  numbers count) of the class, split into 2-D connected components
  (8-connectivity), so the two iliac limbs at a bifurcation are two sections.
- **Width of a section.** The minimum Feret diameter (smallest caliper width over
  all in-plane directions) of the union of the section's voxel squares. A tube
  of diameter D crossing the slice at an angle θ to the slice normal cuts an
  ellipse with minor axis D and major axis D / cos θ, so the minimum width is the
  perpendicular diameter whatever the tilt, while the longest in-plane diameter
  grows with it. Computed exactly: the corners of the first and last voxel of each
  row contain every vertex of the convex hull of the voxel squares; for a convex
  polygon the minimum width is attained with one hull edge flush against a caliper
  (rotating calipers), so it is the minimum over hull edges of the farthest hull
  vertex from that edge's line.
- **Voxel edges, not centres.** Lesion diameters in radmesh run between voxel
  centres (:mod:`radmesh.measurement.diameters`); here the caliper closes on the
  voxel edges, because the guideline measures to the outer wall and the label's
  outermost voxels *are* the wall. For a digitised disk of diameter D the edge
  width lies within one in-plane voxel of D and is unbiased on average, whereas
  the centre width reads about one voxel short — which moves a 30 mm aorta across
  the aneurysm threshold.
- **Abdominal part only.** The label map may include the descending thoracic
  aorta, whose normal diameter approaches the abdominal aneurysm threshold. When
  either lung is labelled, only sections whose centroid lies inferior to the
  lowest lung voxel centre are measured ("below the lung bases"); the posterior
  costophrenic recesses reach below the aortic hiatus, so this keeps the
  abdominal aorta minus at most its uppermost few centimetres, where aneurysms are
  rare. Without lung labels the whole aorta label is measured, and ``region``
  says so.

Lengths are millimetres in patient space (LPS); the grid's direction cosines are
orthonormal, so in-plane distances are ``(i · spacing_x, j · spacing_y)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from radmesh.common import vocabulary as vocab
from radmesh.common.volume import Geometry
from radmesh.measurement.diameters import row_ends_zyx

__all__ = ["AxialDiameter", "abdominal_aortic_diameter", "max_axial_diameter", "min_feret_width"]

REGION_BELOW_LUNGS = "below the lung bases"
REGION_WHOLE = "whole aorta label (no lung label to bound the abdomen)"
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class AxialDiameter:
    """The widest axial section of a tubular structure.

    diameter_mm:     its minimum Feret diameter (voxel edges), mm.
    slice_index:     0-based array index k of that axial slice (image number = k + 1).
    centroid_lps_mm: LPS mm of the section's voxel centres' mean, 3 values.
    region:          which part of the label was searched (a phrase for the report).
    sections:        how many sections were measured.
    """

    diameter_mm: float
    slice_index: int
    centroid_lps_mm: tuple[float, float, float]
    region: str
    sections: int


def min_feret_width(points_mm: np.ndarray) -> float:
    """Minimum caliper width (mm) of the convex hull of (N, 2) in-plane points.

    Exact: the minimum over hull edges of the largest distance of a hull vertex
    from the edge's line. Degenerate sets (fewer than three points, or collinear)
    have width 0.
    """
    pts = np.unique(np.asarray(points_mm, dtype=np.float64), axis=0)
    if len(pts) < 3:
        return 0.0
    try:
        hull = pts[ConvexHull(pts).vertices]  # counter-clockwise
    except QhullError:
        return 0.0  # all points on one line
    edges = np.roll(hull, -1, axis=0) - hull  # (H, 2)
    lengths = np.linalg.norm(edges, axis=1)
    keep = lengths > 0
    edges, starts, lengths = edges[keep], hull[keep], lengths[keep]
    rel = hull[None, :, :] - starts[:, None, :]  # (E, H, 2)
    cross = np.abs(edges[:, None, 0] * rel[..., 1] - edges[:, None, 1] * rel[..., 0]) / lengths[:, None]
    return float(cross.max(axis=1).min())


def _section_corners_mm(section: np.ndarray, spacing_x: float, spacing_y: float) -> np.ndarray:
    """In-plane (u, v) mm of the corners of the first and last voxel of every row of a 2-D mask."""
    rows = np.nonzero(section.any(axis=1))[0]
    sub = section[rows]
    first = sub.argmax(axis=1)
    last = section.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    i = np.concatenate([first - 0.5, first - 0.5, last + 0.5, last + 0.5])
    j = np.concatenate([rows - 0.5, rows + 0.5, rows - 0.5, rows + 0.5])
    return np.stack([i * spacing_x, j * spacing_y], axis=1)


def _widest_section(crop: np.ndarray, offset_zyx: tuple[int, int, int], geometry: Geometry,
                    max_s_mm: float | None, region: str) -> AxialDiameter | None:
    """Widest section of the boolean (z, y, x) ``crop`` whose first voxel is ``offset_zyx`` in the volume."""
    k0, j0, i0 = offset_zyx
    sx, sy, _ = geometry.spacing_xyz_mm
    best: tuple[float, int, np.ndarray] | None = None
    sections = 0
    for dk in range(crop.shape[0]):
        comp, n = ndimage.label(crop[dk], structure=_EIGHT)
        for c, sl in enumerate(ndimage.find_objects(comp) if n else (), start=1):
            section = comp[sl] == c
            jj, ii = np.nonzero(section)
            centre_idx = np.array([[k0 + dk, j0 + sl[0].start + jj.mean(), i0 + sl[1].start + ii.mean()]])
            centroid = geometry.to_lps(centre_idx)[0]
            if max_s_mm is not None and not centroid[2] < max_s_mm:
                continue
            sections += 1
            width = min_feret_width(_section_corners_mm(section, sx, sy))
            if best is None or width > best[0]:
                best = (width, k0 + dk, centroid)
    if best is None:
        return None
    return AxialDiameter(diameter_mm=best[0], slice_index=int(best[1]),
                         centroid_lps_mm=tuple(float(v) for v in best[2]), region=region, sections=sections)


def max_axial_diameter(labels: np.ndarray, geometry: Geometry, class_index: int = vocab.AORTA,
                       max_s_mm: float | None = None, region: str = REGION_WHOLE) -> AxialDiameter | None:
    """The widest axial section of ``class_index`` in the (z, y, x) label array on ``geometry``.

    ``max_s_mm``: only sections whose centroid S (LPS z, mm) is below this are
    measured. Returns None when the class is absent or no section qualifies.
    """
    mask = np.asarray(labels) == class_index
    boxes = ndimage.find_objects(mask.view(np.uint8))
    if not boxes or boxes[0] is None:
        return None
    box = boxes[0]
    return _widest_section(mask[box], tuple(s.start for s in box), geometry, max_s_mm, region)


def abdominal_aortic_diameter(labels: np.ndarray, geometry: Geometry) -> AxialDiameter | None:
    """The aorta's (class 8) widest axial section below the lung bases (whole label without lungs).

    ``labels``: uint8 (z, y, x) class indices on ``geometry``. None when there is no aorta label
    (or, with lungs labelled, no aorta below them).
    """
    boxes = ndimage.find_objects(labels, max_label=vocab.NUM_CLASSES)
    aorta_box = boxes[vocab.AORTA - 1]
    if aorta_box is None:
        return None
    lowest: float | None = None
    for lung in (vocab.RIGHT_LUNG, vocab.LEFT_LUNG):
        box = boxes[lung - 1]
        if box is None:
            continue
        # S is linear in the index, so its minimum over the lung sits at a row end (a hull vertex).
        ends = row_ends_zyx(labels[box] == lung) + np.array([s.start for s in box])
        s = float(geometry.to_lps(ends)[:, 2].min())
        lowest = s if lowest is None else min(lowest, s)
    crop = labels[aorta_box] == vocab.AORTA
    offset = tuple(s.start for s in aorta_box)
    if lowest is None:
        return _widest_section(crop, offset, geometry, None, REGION_WHOLE)
    return _widest_section(crop, offset, geometry, lowest, REGION_BELOW_LUNGS)
