"""Lesions of the CT phantom: exact rotated ellipsoids, and where they are.

Placement
    A lesion is an exact ellipsoid in patient LPS millimetres: centre c, semi-axes
    (a, b, c) with a ≥ b ≥ c, rotation R whose columns are the ellipsoid axes in LPS.
    A voxel carries the lesion label when its centre p satisfies
    ``|diag(1/r) Rᵀ (p − c)|² ≤ 1``. Nothing deforms or blurs the label, so the
    analytic volume 4/3·π·a·b·c and maximum diameter 2·a are the truth. A placed
    lesion satisfies, on the grid:

    - every lesion voxel *and* its 26-neighbour shell carry the host label (the
      lesion is enclosed by its host, at least one voxel inside its boundary and
      inside the image);
    - no voxel within two voxels (Chebyshev) of it carries any lesion label, so any
      two lesions are separate 26-connected components with a gap of ≥ 2 voxels.

    A lesion too large to fit is shrunk (its target size is first capped by the
    host's largest inscribed ball, measured by a distance transform); one that
    cannot be placed at ≥ 5 mm is dropped (or, when the config demands it, an error).
    Where no host can enclose it (a thin organ on a coarse grid), the shell rule
    relaxes to "mostly host" and the record says ``"enclosed": false``. A pancreas
    tumour larger than the gland can hold first swells the pancreas around it (over
    unlabelled fat and soft tissue only), as a real mass widens the contour; the
    swelling is pancreas in the label map, so the truth stays consistent with it.
    Most lesions are aligned with the host's local principal axes (±20°), the rest
    randomly oriented.

Location conventions (the contract with ``radmesh.measurement.location``; all on
LPS voxel centres of the *label map*, so they can be recomputed from it alone)
    Pancreas: principal axis (first PCA eigenvector) of pancreas ∪ pancreas-tumour
        voxel centres, oriented to +x (patient left); their projections span
        [t0, t1]; f = (proj(c) − t0)/(t1 − t0); f < 1/3 → "head", < 2/3 → "body",
        else "tail". The ``pancreas_subregions`` map is this same rule applied to
        every pancreas ∪ pancreas-tumour voxel (1 head, 2 body, 3 tail).
        margin = min(|f − 1/3|, |f − 2/3|).
    Kidney: side from the host label (2 right, 3 left). S extent [s0, s1] of that
        kidney's voxels together with the kidney lesions (26, 32) it hosts;
        f = (c_S − s0)/(s1 − s0); f < 1/3 → "lower pole", < 2/3 → "mid",
        else "upper pole". margin = min(|f − 1/3|, |f − 2/3|).
    Liver: Cantlie's plane through the gall-bladder (4) centroid g and the IVC (9)
        centroid v, containing the S axis: d = (v − g) with its S part dropped,
        normal n = (d_y, −d_x, 0)/|·| oriented to +x; (c − g)·n > 0 → "left lobe",
        else "right lobe". margin = |(c − g)·n| / (x extent of liver ∪ liver tumour).
        (If gall bladder or IVC is missing, or |n_x| < 0.25, the split is the
        median x of liver ∪ liver tumour; the generated anatomy never needs it.)
    Lung: the host lung label, 16 → "right", 17 → "left"; margin 1.0 (the lesion is
        enclosed by one lung, there is no boundary to be near).

Each truth record gives ``location`` (pancreas "head"/"body"/"tail"; kidney
"right"/"left" + " " + pole, e.g. "right upper pole"; liver "right lobe"/"left
lobe"; lung "right"/"left"), ``subregion`` (the vocabulary sub-region alone),
``laterality`` ("left"/"right"/"none") and ``location_margin`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Geometry
from radmesh.phantom.anatomy import F32, Canvas, axis_angle, random_rotation, random_unit
from radmesh.phantom.phases import HOST_TISSUE, draw_pattern, pattern_values

# class → (host classes, max-diameter range mm, HU key, presence probability)
LESION_SPECS: dict[int, tuple[tuple[int, ...], tuple[float, float], str, float]] = {
    vocab.PANCREAS_TUMOR: ((vocab.PANCREAS,), (12.0, 45.0), "pancreas_tumor", 0.35),
    vocab.KIDNEY_TUMOR: ((vocab.RIGHT_KIDNEY, vocab.LEFT_KIDNEY), (5.0, 60.0), "kidney_tumor", 0.35),
    vocab.KIDNEY_CYST: ((vocab.RIGHT_KIDNEY, vocab.LEFT_KIDNEY), (5.0, 40.0), "kidney_cyst", 0.35),
    vocab.LUNG_TUMOR: ((vocab.RIGHT_LUNG, vocab.LEFT_LUNG), (5.0, 30.0), "lung_tumor", 0.35),
    vocab.LIVER_TUMOR: ((vocab.LIVER,), (5.0, 60.0), "liver_tumor", 0.0),
}
# v2 adds the two lesion classes whose hosts v1 lacks. A hepatic vessel tumour lies in the
# liver against a hepatic vessel (its centre within its long semi-axis + 8 mm of one).
V2_LESION_SPECS: dict[int, tuple[tuple[int, ...], tuple[float, float], str, float]] = {
    **LESION_SPECS,
    vocab.HEPATIC_VESSEL_TUMOR: ((vocab.LIVER,), (8.0, 45.0), "liver_tumor", 0.35),
    vocab.COLON_TUMOR: ((vocab.COLON,), (10.0, 40.0), "liver_tumor", 0.3),
}
NEAR: dict[int, tuple[int, float]] = {vocab.HEPATIC_VESSEL_TUMOR: (vocab.HEPATIC_VESSEL, 8.0)}
V2_PLACEMENT_ORDER = (vocab.PANCREAS_TUMOR, vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST, vocab.LUNG_TUMOR,
                      vocab.COLON_TUMOR, vocab.HEPATIC_VESSEL_TUMOR, vocab.LIVER_TUMOR)
# Small hosts first, so a big liver tumour never crowds them out.
PLACEMENT_ORDER = (vocab.PANCREAS_TUMOR, vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST, vocab.LUNG_TUMOR,
                   vocab.LIVER_TUMOR)
LIVER_TUMOR_COUNT_P = (0.45, 0.30, 0.15, 0.10)  # 0, 1, 2, 3 liver tumours
MIN_DIAMETER_MM = 5.0
_LESION_LUT = np.zeros(256, dtype=bool)
_LESION_LUT[list(vocab.LESION_INDICES)] = True
_CUBE = np.ones((3, 3, 3), dtype=bool)


class LesionPlacementError(InvalidInputError):
    """A lesion the config asks for cannot be placed (its host is absent or too small)."""


@dataclass
class Lesion:
    class_index: int
    host: int
    centre_lps: np.ndarray
    semi_axes: np.ndarray  # (a, b, c), a ≥ b ≥ c, mm
    rotation: np.ndarray  # columns: ellipsoid axes in LPS
    voxel_count: int
    enclosed: bool = True  # its 26-neighbour shell is all host
    pattern: str | None = None  # v2: attenuation pattern (radmesh.phantom.phases.PATTERNS); v1: None


def plan(rng: np.random.Generator, forced: tuple[int, ...] | None, specs: dict = LESION_SPECS,
         order: tuple[int, ...] = PLACEMENT_ORDER) -> list[int]:
    """The lesion classes to place, in placement order (liver tumours may repeat).

    ``specs`` and ``order``: v1's by default; v2 passes :data:`V2_LESION_SPECS` and
    :data:`V2_PLACEMENT_ORDER`.
    """
    if forced is not None:
        bad = [c for c in forced if c not in specs]
        if bad:
            names = ", ".join(f"{c} {vocab.get(c).name.lower()}" for c in sorted(specs))
            raise InvalidInputError(f"lesions {bad} cannot be generated; choose from {sorted(specs)} ({names})")
        counts = {c: list(forced).count(c) for c in order}
    else:
        counts = {c: int(rng.random() < specs[c][3]) for c in order}
        counts[vocab.LIVER_TUMOR] = int(rng.choice(len(LIVER_TUMOR_COUNT_P), p=LIVER_TUMOR_COUNT_P))
    return [c for c in order for _ in range(counts[c])]


def place_all(rng: np.random.Generator, canvas: Canvas, geometry: Geometry, hu: dict[str, float],
              classes: list[int], required: bool, patterns: bool = False) -> list[Lesion]:
    """Place ``classes`` in order; ``patterns`` (v2) draws an attenuation pattern per lesion."""
    placed = []
    for cls in classes:
        lesion = _place(rng, canvas, geometry, hu, cls, patterns)
        if lesion is None:
            if required:
                raise LesionPlacementError(
                    f"cannot place a {vocab.get(cls).name.lower()} of at least {MIN_DIAMETER_MM:g} mm: "
                    "its host organ is outside the field of view or too small at this spacing")
            continue
        placed.append(lesion)
    return placed


def _axis_boxes(geometry: Geometry, centre: np.ndarray, half: np.ndarray, pad: int
                ) -> tuple[tuple[slice, slice, slice], bool] | None:
    corners = np.array([[centre[0] + sx * half[0], centre[1] + sy * half[1], centre[2] + sz * half[2]]
                        for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    kji = geometry.to_index_zyx(corners)
    lo = np.floor(kji.min(axis=0)).astype(int) - pad
    hi = np.ceil(kji.max(axis=0)).astype(int) + pad + 1
    inside = bool(np.all(lo >= 0) and np.all(hi <= np.array(geometry.shape_zyx)))
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, geometry.shape_zyx)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi)), inside


def ellipsoid_mask(geometry: Geometry, box: tuple[slice, slice, slice], centre: np.ndarray,
                   semi_axes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Boolean mask over ``box`` of the voxels whose centre lies in the ellipsoid (float64, exact)."""
    aff = geometry.index_zyx_to_lps
    rows = (rotation.T / np.asarray(semi_axes, float)[:, None]) @ aff[:3, :3]  # (3, 3) on (k, j, i)
    off = (rotation.T / np.asarray(semi_axes, float)[:, None]) @ (aff[:3, 3] - centre)
    k = np.arange(box[0].start, box[0].stop, dtype=np.float64)
    j = np.arange(box[1].start, box[1].stop, dtype=np.float64)
    i = np.arange(box[2].start, box[2].stop, dtype=np.float64)
    f = None
    for r in range(3):
        q = ((off[r] + rows[r, 0] * k)[:, None, None] + (rows[r, 1] * j)[None, :, None]) + (rows[r, 2] * i)[None, None, :]
        q *= q
        f = q if f is None else f + q
    return f <= 1.0


def _place(rng: np.random.Generator, canvas: Canvas, geometry: Geometry, hu: dict[str, float],
           cls: int, patterns: bool = False) -> Lesion | None:
    hosts, (dlo, dhi), hu_key, _ = V2_LESION_SPECS[cls]
    sp = np.asarray(geometry.spacing_zyx_mm)
    # At least 5 mm, and not much below the coarsest spacing (so it shows on the grid).
    d_min = max(MIN_DIAMETER_MM, 1.2 * float(sp.max()))
    # The size and shape are drawn first, from the class's range (log-uniform), then fitted.
    lo = min(max(dlo, d_min), dhi)
    diameter = float(np.exp(rng.uniform(np.log(lo), np.log(dhi))))
    ratios = np.array([1.0, rng.uniform(0.7, 1.0), 0.0])
    ratios[2] = ratios[1] * rng.uniform(0.75, 1.0)
    order = list(hosts)
    if len(order) > 1:
        order = [order[i] for i in rng.permutation(len(order))]
    maps = {}
    if cls == vocab.PANCREAS_TUMOR:
        lesion = _grow_and_place(rng, canvas, geometry, hu, cls, diameter / 2 * ratios, d_min, patterns)
        if lesion is not None:
            return lesion
    # First try to enclose the lesion in its host (a one-voxel host shell all round); only
    # if no host can take one that way (thin organ, coarse grid), let it reach the host's edge.
    for enclosed in (True, False):
        for host in order:
            if host not in maps:
                maps[host] = _distance_map(canvas, host, sp)
            if maps[host] is None:
                continue
            box, coarse, dist, stride = maps[host]
            near = _near_distance(canvas, box, stride, sp, cls)
            r_avail = float(dist.max()) - (float(sp.max()) if enclosed else 0.0)
            a = diameter / 2
            if a > r_avail:
                a = r_avail * rng.uniform(0.8, 1.0)
            if 2 * a < d_min:
                if d_min / 2 > float(dist.max()):
                    continue
                a = d_min / 2  # the exact check on the grid decides
            for attempt in range(48):
                if attempt and attempt % 6 == 0:
                    if 2 * a <= d_min:
                        break
                    a = max(0.9 * a, d_min / 2)
                semi = a * ratios
                cand = np.flatnonzero(dist >= max(semi[1], semi[0] - 0.5 * float(np.linalg.norm(sp * stride))))
                if cand.size == 0:
                    cand = np.flatnonzero(dist >= dist.max())
                if near is not None:
                    cand = cand[near.flat[cand] <= semi[0] + NEAR[cls][1]]
                    if cand.size == 0:
                        continue
                cidx = np.array(np.unravel_index(cand[rng.integers(cand.size)], dist.shape))
                kc = cidx * stride + rng.uniform(-0.5, 0.5, 3) * stride
                kc += [box[0].start, box[1].start, box[2].start]
                centre = geometry.to_lps(kc[None, :])[0]
                if rng.random() < 0.7:  # long axis along the host's local long direction, thin along its thin one
                    rot = _aligned_rotation(rng, geometry, coarse, cidx, stride, 2.0 * a)
                else:
                    rot = random_rotation(rng)
                lesion = _try(canvas, geometry, cls, host, centre, semi, rot, enclosed)
                if lesion is not None:
                    _paint_lesion(rng, canvas, geometry, lesion, hu, patterns)
                    return lesion
    return None


def _near_distance(canvas: Canvas, box, stride: np.ndarray, sp: np.ndarray, cls: int) -> np.ndarray | None:
    """For a class that must lie near another (NEAR), mm from each coarse host-box cell to that class."""
    if cls not in NEAR:
        return None
    target = canvas.labels[box][::stride[0], ::stride[1], ::stride[2]] == NEAR[cls][0]
    if not target.any():
        return np.full(target.shape, np.inf)
    return ndimage.distance_transform_edt(~target, sampling=sp * stride)


def _paint_lesion(rng: np.random.Generator, canvas: Canvas, geometry: Geometry, lesion: Lesion,
                  hu: dict[str, float], patterns: bool) -> None:
    if not patterns:
        _paint(rng, canvas, geometry, lesion, hu[V2_LESION_SPECS[lesion.class_index][2]])
        return
    lesion.pattern = draw_pattern(rng, lesion.class_index)
    core, rim = pattern_values(rng, lesion.pattern, hu[HOST_TISSUE[lesion.class_index]])
    _paint(rng, canvas, geometry, lesion, core)
    if rim != core:
        rim_mm = float(rng.uniform(1.5, 4.0))
        half = np.sqrt(((lesion.rotation * lesion.semi_axes[None, :]) ** 2).sum(axis=1))
        box, _ = _axis_boxes(geometry, lesion.centre_lps, half, pad=1)
        inside = ellipsoid_mask(geometry, box, lesion.centre_lps, lesion.semi_axes, lesion.rotation)
        inner = np.maximum(lesion.semi_axes - rim_mm, 0.3 * lesion.semi_axes)
        inside &= ~ellipsoid_mask(geometry, box, lesion.centre_lps, inner, lesion.rotation)
        canvas.hu[box][inside] = F32(rim)


def _grow_and_place(rng: np.random.Generator, canvas: Canvas, geometry: Geometry, hu: dict[str, float],
                    cls: int, semi: np.ndarray, d_min: float, patterns: bool = False) -> Lesion | None:
    """A mass thicker than its (thin) host: swell the host around it first, then place it.

    The host is widened by an ellipsoid a little larger than the lesion, over
    unlabelled soft tissue and fat only (never bone, gas, or another organ), as a
    tumour expands the pancreatic contour. Returns None (host perhaps swollen) if the
    lesion still does not fit; the caller then fits a smaller one the usual way.
    """
    host = LESION_SPECS[cls][0][0]
    sp = np.asarray(geometry.spacing_zyx_mm)
    got = _distance_map(canvas, host, sp)
    if got is None:
        return None
    box, coarse, dist, stride = got
    if semi[0] <= float(dist.max()) - float(sp.max()):
        return None  # fits as it is
    cand = np.flatnonzero(dist >= 0.7 * dist.max())
    cidx = np.array(np.unravel_index(cand[rng.integers(cand.size)], dist.shape))
    kc = cidx * stride + [box[0].start, box[1].start, box[2].start]
    centre = geometry.to_lps(kc[None, :].astype(float))[0]
    rot = _aligned_rotation(rng, geometry, coarse, cidx, stride, 2.0 * semi[0])
    margin = 1.5 * float(sp.max()) + 1.0
    outer = semi + margin
    half = np.sqrt(((rot * outer[None, :]) ** 2).sum(axis=1))
    got = _axis_boxes(geometry, centre, half, pad=1)
    if got is None:
        return None
    gbox, _ = got
    swell = ellipsoid_mask(geometry, gbox, centre, outer, rot)
    lab, h = canvas.labels[gbox], canvas.hu[gbox]
    swell &= (lab == 0) & (h > F32(-200)) & (h < F32(150))
    lab[swell] = host
    h[swell] = F32(hu["pancreas"])
    canvas.boxes.setdefault(host, []).append(gbox)  # the host may now reach past its painted box
    for scale in (1.0, 0.9, 0.8, 0.7, 0.6):
        if 2 * semi[0] * scale < d_min:
            break
        lesion = _try(canvas, geometry, cls, host, centre, semi * scale, rot, True)
        if lesion is not None:
            _paint_lesion(rng, canvas, geometry, lesion, hu, patterns)
            return lesion
    return None


def _distance_map(canvas: Canvas, host: int, sp: np.ndarray):
    """(box, distance to the host's outside in mm on a coarse copy of the host mask, stride) or None."""
    box = canvas.class_box(host)
    if box is None:
        return None
    host_mask = canvas.labels[box] == host
    if not host_mask.any():
        return None
    cell = 2.0
    while True:  # ≈ 2 mm cells, at most ~250k of them
        stride = np.maximum(1, np.round(cell / sp)).astype(int)
        if np.prod(np.ceil(np.array(host_mask.shape) / stride)) <= 250_000:
            break
        cell *= 1.25
    coarse = host_mask[::stride[0], ::stride[1], ::stride[2]]
    dist = ndimage.distance_transform_edt(np.pad(coarse, 1), sampling=sp * stride)[1:-1, 1:-1, 1:-1]
    return box, coarse, dist, stride


def _aligned_rotation(rng: np.random.Generator, geometry: Geometry, coarse: np.ndarray, cidx: np.ndarray,
                      stride: np.ndarray, radius_mm: float) -> np.ndarray:
    """Principal axes (largest variance first) of the host within ``radius_mm`` of a coarse
    voxel, as LPS columns, turned by a random rotation of up to 20°."""
    step = np.asarray(geometry.spacing_zyx_mm) * stride
    r = np.ceil(radius_mm / step).astype(int)
    lo = np.maximum(cidx - r, 0)
    hi = np.minimum(cidx + r + 1, coarse.shape)
    pts = np.argwhere(coarse[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]) + lo - cidx
    pts = pts * step
    pts = pts[(pts ** 2).sum(axis=1) <= radius_mm ** 2]
    if len(pts) < 8:
        return random_rotation(rng)
    w, v = np.linalg.eigh(np.cov(pts.T, bias=True))
    axes_kji = v[:, np.argsort(w)[::-1]]
    rot = geometry.direction @ axes_kji[::-1, :]  # (k, j, i) mm directions → LPS
    if np.linalg.det(rot) < 0:
        rot[:, 2] = -rot[:, 2]
    wobble = axis_angle(random_unit(rng), np.radians(rng.uniform(0, 20)))
    return wobble @ rot


def _try(canvas: Canvas, geometry: Geometry, cls: int, host: int, centre: np.ndarray,
         semi: np.ndarray, rot: np.ndarray, enclosed: bool) -> Lesion | None:
    half = np.sqrt(((rot * semi[None, :]) ** 2).sum(axis=1))
    got = _axis_boxes(geometry, centre, half, pad=3)
    if got is None or not got[1]:
        return None  # touches the image edge
    box, _ = got
    inside = ellipsoid_mask(geometry, box, centre, semi, rot)
    count = int(np.count_nonzero(inside))
    if count == 0:
        return None
    lab = canvas.labels[box]
    if not np.all(lab[inside] == host):
        return None
    near = ndimage.binary_dilation(inside, _CUBE)
    shell = lab[near & ~inside]
    if enclosed:
        if not np.all(shell == host):
            return None
    elif np.count_nonzero(shell == host) * 2 < shell.size:
        return None  # the host must still be what mostly surrounds it
    ring2 = ndimage.binary_dilation(near, _CUBE) & ~near
    if np.any(_LESION_LUT[lab[near | ring2]]):
        return None
    return Lesion(cls, host, centre, semi, rot, count, enclosed)


def _paint(rng: np.random.Generator, canvas: Canvas, geometry: Geometry, lesion: Lesion, value: float) -> None:
    half = np.sqrt(((lesion.rotation * lesion.semi_axes[None, :]) ** 2).sum(axis=1))
    box, _ = _axis_boxes(geometry, lesion.centre_lps, half, pad=1)
    inside = ellipsoid_mask(geometry, box, lesion.centre_lps, lesion.semi_axes, lesion.rotation)
    canvas.labels[box][inside] = lesion.class_index
    hu = canvas.hu[box]
    if lesion.class_index == vocab.KIDNEY_TUMOR or lesion.class_index == vocab.LIVER_TUMOR:
        # Heterogeneous enhancement: a smooth texture in the lesion's own frame, and a
        # darker (necrotic) core in larger kidney tumours.
        idx = np.argwhere(inside)
        q = (geometry.to_lps(idx + [box[0].start, box[1].start, box[2].start]) - lesion.centre_lps) @ lesion.rotation
        q /= lesion.semi_axes
        amp = 15.0 if lesion.class_index == vocab.KIDNEY_TUMOR else 5.0
        tex = np.zeros(len(q))
        for _ in range(2):
            k = rng.standard_normal(3) * 2.5
            tex += amp * 0.5 * np.sin(q @ k + rng.uniform(0, 2 * np.pi))
        if lesion.class_index == vocab.KIDNEY_TUMOR and lesion.semi_axes[2] > 12:
            tex[(q * q).sum(axis=1) < 0.25] -= rng.uniform(30, 50)
        hu[inside] = (value + tex).astype(F32)
    else:
        hu[inside] = F32(value)


# ---- locations -------------------------------------------------------------------

def _lesion_voxels(geometry: Geometry, les: Lesion, box) -> np.ndarray:
    """Boolean mask over ``box`` of the lesion's voxels (the lesion lies inside its host's box)."""
    out = np.zeros(tuple(b.stop - b.start for b in box), dtype=bool)
    half = np.sqrt(((les.rotation * les.semi_axes[None, :]) ** 2).sum(axis=1))
    lbox, _ = _axis_boxes(geometry, les.centre_lps, half, pad=1)
    m = ellipsoid_mask(geometry, lbox, les.centre_lps, les.semi_axes, les.rotation)
    idx = np.argwhere(m) + [lbox[a].start - box[a].start for a in range(3)]
    out[tuple(idx.T)] = True
    return out


def _centroid(labels: np.ndarray, geometry: Geometry, box, cls: int) -> np.ndarray | None:
    """LPS centroid of the voxel centres of ``cls`` (= the LPS point of the mean index: it is affine)."""
    if box is None:
        return None
    idx = np.nonzero(labels[box] == cls)
    if idx[0].size == 0:
        return None
    mean = np.array([ix.mean() + b.start for ix, b in zip(idx, box)])
    return geometry.to_lps(mean[None, :])[0]


def _points(labels: np.ndarray, geometry: Geometry, box, classes: tuple[int, ...]) -> np.ndarray:
    if box is None:
        return np.zeros((0, 3))
    sub = labels[box]
    mask = np.isin(sub, classes)
    idx = np.argwhere(mask)
    if idx.size == 0:
        return np.zeros((0, 3))
    return geometry.to_lps(idx + [box[0].start, box[1].start, box[2].start])


def lps_range(mask: np.ndarray, geometry: Geometry, box, comp: int) -> tuple[float, float] | None:
    """(min, max) of LPS component ``comp`` over the voxel centres of ``mask`` (a crop at ``box``).

    The coordinate is affine in the index, so along each x-row only the first and the
    last voxel of the mask can be extreme: the same numbers as over all voxels, cheaply.
    """
    has = mask.any(axis=2)
    kk, jj = np.nonzero(has)
    if kk.size == 0:
        return None
    first = mask.argmax(axis=2)[kk, jj]
    last = mask.shape[2] - 1 - mask[:, :, ::-1].argmax(axis=2)[kk, jj]
    aff = geometry.index_zyx_to_lps
    a, o = aff[comp, :3], aff[comp, 3]
    base = o + a[0] * (kk + box[0].start) + a[1] * (jj + box[1].start)
    v = np.concatenate([base + a[2] * (first + box[2].start), base + a[2] * (last + box[2].start)])
    return float(v.min()), float(v.max())


def principal_axis(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, first principal axis oriented to +x) of (N, 3) LPS points."""
    mean = points.mean(axis=0)
    c = points - mean
    w, v = np.linalg.eigh(c.T @ c / len(points))
    axis = v[:, int(np.argmax(w))]
    for comp in range(3):
        if abs(axis[comp]) > 1e-9:
            if axis[comp] < 0:
                axis = -axis
            break
    return mean, axis


@dataclass
class PancreasAxis:
    mean: np.ndarray
    axis: np.ndarray
    t0: float
    t1: float

    def fraction(self, p: np.ndarray) -> np.ndarray:
        return ((np.asarray(p, float) - self.mean) @ self.axis - self.t0) / (self.t1 - self.t0)


def pancreas_subregions(labels: np.ndarray, geometry: Geometry, box) -> tuple[np.ndarray, PancreasAxis | None]:
    """uint8 map: 0 outside pancreas ∪ pancreas tumour, 1 head, 2 body, 3 tail (PCA thirds)."""
    out = np.zeros(labels.shape, dtype=np.uint8)
    if box is None:
        return out, None
    sub = labels[box]
    mask = (sub == vocab.PANCREAS) | (sub == vocab.PANCREAS_TUMOR)
    idx = np.argwhere(mask)
    if len(idx) < 2:
        return out, None
    pts = geometry.to_lps(idx + [box[0].start, box[1].start, box[2].start])
    mean, axis = principal_axis(pts)
    t = (pts - mean) @ axis
    pa = PancreasAxis(mean, axis, float(t.min()), float(t.max()))
    if pa.t1 <= pa.t0:
        return out, None
    f = (t - pa.t0) / (pa.t1 - pa.t0)
    part = np.clip(np.floor(f * 3), 0, 2).astype(np.uint8) + 1
    out[box][tuple(idx.T)] = part
    return out, pa


def _thirds(f: float) -> tuple[int, float]:
    return min(2, max(0, int(np.floor(f * 3)))), float(min(abs(f - 1 / 3), abs(f - 2 / 3)))


def locate(lesions: list[Lesion], labels: np.ndarray, geometry: Geometry, canvas: Canvas,
           pancreas: PancreasAxis | None) -> list[dict]:
    """Location, sub-region, laterality and margin of each lesion (rules in the module docstring)."""
    out = []
    cache: dict = {}
    for les in lesions:
        c = les.centre_lps
        if les.class_index == vocab.PANCREAS_TUMOR:
            if pancreas is None:
                out.append(dict(location="pancreas", subregion=None, laterality="none", location_margin=0.0))
                continue
            third, margin = _thirds(float(pancreas.fraction(c)))
            part = vocab.PANCREAS_SUBREGIONS[third]
            out.append(dict(location=part, subregion=part, laterality="none", location_margin=margin))
        elif les.class_index in (vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST):
            side = vocab.get(les.host).laterality.value
            if ("kidney", les.host) not in cache:
                # The kidney's voxels with the kidney lesions it hosts (they lie inside its box).
                box = canvas.class_box(les.host)
                mask = labels[box] == les.host
                for o in lesions:
                    if o.host == les.host and o.class_index in (vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST):
                        mask[_lesion_voxels(geometry, o, box)] = True
                cache[("kidney", les.host)] = lps_range(mask, geometry, box, 2)
            s0, s1 = cache[("kidney", les.host)]
            third, margin = _thirds((float(c[2]) - s0) / (s1 - s0))
            pole = ("lower pole", "mid", "upper pole")[third]
            out.append(dict(location=f"{side} {pole}", subregion=pole, laterality=side, location_margin=margin))
        elif les.class_index in (vocab.LIVER_TUMOR, vocab.HEPATIC_VESSEL_TUMOR):
            if "liver" not in cache:
                gb = _centroid(labels, geometry, canvas.class_box(vocab.GALL_BLADDER), vocab.GALL_BLADDER)
                ivc = _centroid(labels, geometry, canvas.class_box(vocab.POSTCAVA), vocab.POSTCAVA)
                box = canvas.class_box(vocab.LIVER)
                crop = labels[box]
                lx = lps_range((crop == vocab.LIVER) | (crop == vocab.LIVER_TUMOR), geometry, box, 0)
                cache["liver"] = (gb, ivc, lx)
            g, v, lx = cache["liver"]
            width = float(lx[1] - lx[0])
            n = None
            if g is not None and v is not None:
                d = v - g
                n = np.array([d[1], -d[0], 0.0])
                norm = float(np.linalg.norm(n))
                n = n / norm if norm > 0 and abs(n[0]) / norm >= 0.25 else None
            if n is not None:
                if n[0] < 0:
                    n = -n
                dist = float((c - g) @ n)
            else:  # not reached by the generated anatomy; the measurement rule's fallback
                xs = _points(labels, geometry, canvas.class_box(vocab.LIVER), (vocab.LIVER, vocab.LIVER_TUMOR))[:, 0]
                dist = float(c[0] - np.median(xs))
            lobe = "left lobe" if dist > 0 else "right lobe"
            out.append(dict(location=lobe, subregion=lobe, laterality="none",
                            location_margin=min(1.0, abs(dist) / width) if width > 0 else 0.0))
        elif les.class_index == vocab.COLON_TUMOR:
            out.append(dict(location="colon", subregion=None, laterality="none", location_margin=1.0))
        else:  # lung
            side = vocab.get(les.host).laterality.value
            out.append(dict(location=side, subregion=side, laterality=side, location_margin=1.0))
    return out
