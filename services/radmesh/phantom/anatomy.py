"""Procedural abdomen and lower chest: organ shapes, tissue values and their rasterisation.

Every shape lives in the *anatomy frame*: millimetres on LPS axes (+x patient left,
+y posterior, +z superior), origin in the middle of the body at the level of the
pancreatic body (about L1). The generator places this frame into patient LPS with a
random pose and the image grid into LPS with its own direction matrix; :class:`Grid`
composes both into one affine map from voxel indices (i, j, k) to anatomy
millimetres, so every shape is an affine function of the indices and is evaluated
only inside its own bounding box, slab by slab, in float32.

Painting order decides overlaps (a later structure overrides an earlier one, label
and HU together): body layers, bowel and ribs → table → lungs, diaphragm, heart →
back muscles → liver → spleen → stomach → kidneys → pancreas → gall bladder → aorta →
IVC → spine. Unlabelled structures (fat, muscle, bowel, bone, heart, table) paint
label 0.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from radmesh.common import vocabulary as vocab

F32 = np.float32

# Tissue values, HU: (low, high) of the per-case uniform draw. Contrast-enhanced,
# portal-venous phase.
HU_RANGES: dict[str, tuple[float, float]] = {
    "air": (-1000.0, -1000.0),
    "fat": (-110.0, -90.0),
    "muscle": (40.0, 60.0),
    "liver": (100.0, 120.0),
    "spleen": (110.0, 130.0),
    "kidney_cortex": (180.0, 200.0),
    "kidney_medulla": (150.0, 170.0),
    "renal_sinus_fat": (-90.0, -60.0),
    "pancreas": (90.0, 110.0),
    "aorta": (150.0, 180.0),
    "ivc": (130.0, 150.0),
    "gall_bladder": (0.0, 20.0),
    "stomach_wall": (50.0, 70.0),
    "stomach_content": (5.0, 25.0),
    "gas": (-1000.0, -950.0),
    "bowel_wall": (40.0, 60.0),
    "bowel_content": (10.0, 40.0),
    "lung": (-870.0, -830.0),
    "heart": (120.0, 150.0),
    "bone_cancellous": (380.0, 480.0),
    "bone_cortical": (700.0, 800.0),
    "disc": (70.0, 100.0),
    "csf": (5.0, 20.0),
    "table": (150.0, 300.0),
    "table_foam": (-950.0, -900.0),
    "liver_tumor": (50.0, 70.0),
    "pancreas_tumor": (50.0, 70.0),
    "kidney_tumor": (100.0, 130.0),
    "kidney_cyst": (0.0, 12.0),
    "lung_tumor": (20.0, 40.0),
}


def sample_hu(rng: np.random.Generator) -> dict[str, float]:
    """One case's tissue values (HU, rounded to 0.1)."""
    return {k: round(float(rng.uniform(lo, hi)), 1) for k, (lo, hi) in HU_RANGES.items()}


# ---- rotations ----------------------------------------------------------------

def rotation_xyz(ax: float, ay: float, az: float) -> np.ndarray:
    """Rz @ Ry @ Rx for angles in radians."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: rotation by ``angle`` radians about unit ``axis``."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation (unit quaternion from a 4-D Gaussian)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


# ---- the grid and slabs -------------------------------------------------------

class Grid:
    """Voxel indices (i, j, k) of the image grid → anatomy-frame millimetres.

    ``anat = M @ (i, j, k) + b``; arrays are indexed [k, j, i].
    """

    def __init__(self, shape_zyx: tuple[int, int, int], m: np.ndarray, b: np.ndarray) -> None:
        self.shape = tuple(int(s) for s in shape_zyx)
        self.m = np.asarray(m, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.m_inv = np.linalg.inv(self.m)

    def box(self, lo: np.ndarray, hi: np.ndarray, pad: int = 2) -> tuple[slice, slice, slice] | None:
        """Index box (z, y, x slices) covering the anatomy box [lo, hi], or None if outside."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        ijk = (corners - self.b) @ self.m_inv.T
        imin = np.floor(ijk.min(axis=0)).astype(int) - pad
        imax = np.ceil(ijk.max(axis=0)).astype(int) + pad + 1
        sizes = (self.shape[2], self.shape[1], self.shape[0])
        out = []
        for a in range(3):
            a0, a1 = max(0, imin[a]), min(sizes[a], imax[a])
            if a1 <= a0:
                return None
            out.append(slice(int(a0), int(a1)))
        return out[2], out[1], out[0]

    def slabs(self, box: tuple[slice, slice, slice], max_voxels: int = 1 << 20):
        """Yield :class:`Slab` pieces of ``box`` along z, each at most about ``max_voxels``."""
        zs, ys, xs = box
        plane = (ys.stop - ys.start) * (xs.stop - xs.start)
        step = max(1, max_voxels // max(plane, 1))
        for k0 in range(zs.start, zs.stop, step):
            yield Slab(self, (slice(k0, min(zs.stop, k0 + step)), ys, xs))


class Slab:
    """A (z, y, x) box of the grid, able to evaluate affine functions of anatomy mm on it."""

    def __init__(self, grid: Grid, box: tuple[slice, slice, slice]) -> None:
        self.grid, self.box = grid, box
        zs, ys, xs = box
        self._k = np.arange(zs.start, zs.stop, dtype=np.float64)
        self._j = np.arange(ys.start, ys.stop, dtype=np.float64)
        self._i = np.arange(xs.start, xs.stop, dtype=np.float64)

    def field(self, row: np.ndarray, const: float = 0.0) -> np.ndarray:
        """float32 array of ``row · anat + const`` over the slab (one broadcast add)."""
        c = np.asarray(row, dtype=np.float64) @ self.grid.m  # coefficients of (i, j, k)
        off = float(np.asarray(row, dtype=np.float64) @ self.grid.b + const)
        kj = (off + c[2] * self._k)[:, None] + (c[1] * self._j)[None, :]
        return kj.astype(F32)[:, :, None] + (c[0] * self._i).astype(F32)[None, None, :]

    def fields(self, rows: np.ndarray, consts: np.ndarray) -> list[np.ndarray]:
        return [self.field(r, c) for r, c in zip(rows, consts)]

    def xyz(self) -> list[np.ndarray]:
        return self.fields(np.eye(3), np.zeros(3))


# ---- shape primitives -----------------------------------------------------------

@dataclass
class Warp:
    """Smooth displacement u(p) = Σ amp_m · sin(k_m · p + phi_m), anatomy mm (low frequency)."""

    k: np.ndarray  # (m, 3) rad/mm
    phi: np.ndarray  # (m,)
    amp: np.ndarray  # (m, 3) mm

    @classmethod
    def random(cls, rng: np.random.Generator, amp_mm: float, wavelength_mm: tuple[float, float],
               modes: int = 2) -> "Warp":
        k = np.array([random_unit(rng) * 2 * np.pi / rng.uniform(*wavelength_mm) for _ in range(modes)])
        phi = rng.uniform(0, 2 * np.pi, modes)
        amp = np.array([random_unit(rng) * amp_mm * rng.uniform(0.6, 1.0) for _ in range(modes)])
        return cls(k, phi, amp)

    @property
    def max_mm(self) -> float:
        return float(np.sum(np.linalg.norm(self.amp, axis=1))) if len(self.amp) else 0.0

    def sines(self, slab: Slab) -> list[np.ndarray]:
        return [np.sin(slab.field(k, p)) for k, p in zip(self.k, self.phi)]


@dataclass
class Frame:
    """Local normalised frame of an ellipsoid: q = diag(1/r) Rᵀ (p − c); |q| ≤ 1 inside."""

    c: np.ndarray
    r: np.ndarray
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def rows(self) -> np.ndarray:
        return self.rot.T / self.r[:, None]

    def half_extent(self) -> np.ndarray:
        """Half size of the axis-aligned box around the ellipsoid (anatomy mm)."""
        return np.sqrt(((self.rot * self.r[None, :]) ** 2).sum(axis=1))

    def local(self, slab: Slab, warp: Warp | None = None, sines: list[np.ndarray] | None = None
              ) -> list[np.ndarray]:
        rows = self.rows
        q = slab.fields(rows, -rows @ self.c)
        if warp is not None:
            sines = warp.sines(slab) if sines is None else sines
            for s, a in zip(sines, warp.amp):
                dq = rows @ a
                for r in range(3):
                    q[r] += F32(dq[r]) * s
        return q


def sq3(q: list[np.ndarray]) -> np.ndarray:
    f = q[0] * q[0]
    f += q[1] * q[1]
    f += q[2] * q[2]
    return f


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _bbox(frames: list[Frame], margin: float) -> tuple[np.ndarray, np.ndarray]:
    lo = np.min([f.c - f.half_extent() for f in frames], axis=0) - margin
    hi = np.max([f.c + f.half_extent() for f in frames], axis=0) + margin
    return lo, hi


# ---- the anatomy ------------------------------------------------------------------

@dataclass
class Anatomy:
    """One case's sampled anatomy (anatomy-frame mm). Built by :func:`sample_anatomy`."""

    s: float
    # body
    body_c: np.ndarray
    cavity_r: np.ndarray  # (x, y) semi-axes of the abdominal/thoracic cavity
    muscle_mm: float
    fat_mm: float
    fat_anterior_mm: float
    back_y: float
    wobble: tuple[float, float, float]  # amplitude, rad/mm, phase of the z-modulation of the outline
    table_y: float
    # diaphragm domes: (peak z, peak x, peak y, wx, wy, height)
    dome_r: tuple[float, ...]
    dome_l: tuple[float, ...]
    mediastinum: tuple[float, float, float, float]  # cx, cy, rx, ry
    heart: Frame
    # bowel texture
    bowel_k: np.ndarray
    bowel_phi: np.ndarray
    gas_k: np.ndarray
    gas_phi: float
    gas_level: float
    # ribs
    rib_period: float
    rib_slope: float
    rib_z0: float
    rib_low: float
    # organs
    liver_r: Frame
    liver_l: Frame
    liver_cut: tuple[np.ndarray, float]  # normal (anterior-inferior), offset: inside if n·p < offset
    liver_warp: Warp
    spleen: Frame
    spleen_warp: Warp
    stomach: Frame
    stomach_bend: float
    stomach_warp: Warp
    stomach_air: float  # fraction of the lumen depth (anterior) holding gas
    kidneys: dict[int, Frame]
    kidney_warps: dict[int, Warp]
    pancreas_x: tuple[float, float]
    pancreas_y: np.ndarray  # cubic poly coefficients in x
    pancreas_z: np.ndarray
    pancreas_r: np.ndarray  # (2, 3): (ry, rz) at head, body, tail
    pancreas_warp: Warp
    gall_bladder: Frame
    gb_warp: Warp
    aorta: tuple[float, ...]  # x0, y0, x slope/mm, y rise above diaphragm, radius, bifurcation z
    ivc: tuple[float, ...]  # x0, y0, rx, ry, top z, confluence z
    spine: tuple[float, ...]  # yv, rx, ry, level period, disc thickness, z phase
    psoas: tuple[float, float, float]  # x offset, y, top z
    paraspinal: tuple[float, float, float, float]  # x, y, rx, ry
    gravity: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))

    def dome_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height (z, mm) of the diaphragm above anatomy point (x, y): the higher of the two domes."""
        out = None
        for zc, xc, yc, wx, wy, h in (self.dome_r, self.dome_l):
            dx = x - F32(xc)
            dy = y - F32(yc)
            d = dx * dx
            d *= F32(h / wx ** 2)
            dy *= dy
            dy *= F32(h / wy ** 2)
            d += dy
            np.subtract(F32(zc), d, out=d)
            out = d if out is None else np.maximum(out, d, out=out)
        return out

    def core_z(self) -> tuple[float, float]:
        """The z range (anatomy mm) every scan must cover: kidneys' middle to above the lung recesses."""
        return -70.0 * self.s, 75.0 * self.s


def sample_anatomy(rng: np.random.Generator, fov_xy_mm: tuple[float, float]) -> Anatomy:
    """Draw one case's anatomy; the body is shrunk (down to 0.75) to fit the in-plane field of view."""
    muscle = _u(rng, 7, 14)
    fat = _u(rng, 8, 35)
    s = _u(rng, 0.9, 1.1)
    fit = min(0.47 * fov_xy_mm[0] / (125 + muscle + fat * 1.3), 0.47 * fov_xy_mm[1] / (90 + muscle + fat * 1.3))
    if fit < s:
        s = max(0.75, fit)
        fat = min(fat, max(5.0, fat * fit / s))
    j = lambda v, d: s * (v + _u(rng, -d, d))  # noqa: E731  a jittered, scaled position
    rnd_warp = lambda a, lo, hi: Warp.random(rng, a * s, (lo * s, hi * s))  # noqa: E731

    cavity_r = np.array([125.0 * s * _u(rng, 0.95, 1.05), 90.0 * s * _u(rng, 0.95, 1.05)])
    body_c = np.array([0.0, 5.0 * s])
    back_y = body_c[1] + cavity_r[1] + muscle + fat * 0.6
    wobble = (_u(rng, 0.02, 0.05), 2 * np.pi / (s * _u(rng, 250, 400)), _u(rng, 0, 2 * np.pi))

    dome_r = (j(95, 8), j(-60, 10), j(-15, 10), 110 * s, 105 * s, j(85, 8))
    dome_l = (j(82, 8), j(60, 10), j(-10, 10), 105 * s, 100 * s, j(72, 8))
    mediastinum = (j(5, 3), j(15, 5), 30 * s, 85 * s)
    heart = Frame(np.array([j(20, 5), j(-30, 5), dome_l[0] + j(55, 5)]),
                  np.array([62, 48, 55]) * s * _u(rng, 0.9, 1.1),
                  rotation_xyz(0, 0, np.radians(_u(rng, -40, -20))))

    bowel_k = np.array([random_unit(rng) * 2 * np.pi / (s * _u(rng, 35, 70)) for _ in range(4)])
    bowel_phi = rng.uniform(0, 2 * np.pi, 4)
    gas_k = random_unit(rng) * 2 * np.pi / (s * _u(rng, 60, 120))

    liver_r = Frame(np.array([j(-68, 6), j(8, 6), j(28, 6)]),
                    np.array([j(68, 6), j(82, 6), j(92, 8)]),
                    rotation_xyz(np.radians(_u(rng, -8, 8)), np.radians(_u(rng, -12, 0)), np.radians(_u(rng, -10, 10))))
    liver_l = Frame(np.array([j(12, 6), j(-42, 5), j(58, 6)]),
                    np.array([j(62, 6), j(32, 4), j(42, 5)]),
                    rotation_xyz(np.radians(_u(rng, -10, 10)), np.radians(_u(rng, 5, 20)), np.radians(_u(rng, -15, 0))))
    # The visceral (inferior-medial-anterior) surface: keeps the liver off the pancreas and duodenum.
    cut_n = np.array([0.6, -0.3, -0.75]) + rng.uniform(-0.08, 0.08, 3)
    cut_n /= np.linalg.norm(cut_n)
    liver_cut = (cut_n, float(cut_n @ np.array([-55, -40, -5]) * s + _u(rng, -5, 5) * s))

    spleen = Frame(np.array([j(92, 6), j(48, 6), j(42, 8)]),
                   np.array([j(22, 3), j(52, 6), j(48, 6)]),
                   rotation_xyz(np.radians(_u(rng, -15, 15)), np.radians(_u(rng, -10, 10)), np.radians(_u(rng, -45, -25))))
    stomach = Frame(np.array([j(52, 6), j(-28, 6), j(45, 6)]),
                    np.array([j(38, 4), j(32, 4), j(62, 6)]),
                    rotation_xyz(np.radians(_u(rng, -10, 10)), np.radians(_u(rng, -35, -20)), np.radians(_u(rng, -15, 15))))
    kidneys = {}
    kidney_warps = {}
    for cls, sign, zc in ((vocab.RIGHT_KIDNEY, -1, -38), (vocab.LEFT_KIDNEY, 1, -27)):
        rot = rotation_xyz(np.radians(_u(rng, -15, -5)),  # upper pole posterior
                           np.radians(-sign * _u(rng, 8, 20)),  # upper pole medial
                           np.radians(-sign * _u(rng, 20, 40)))  # hilum anteromedial
        kidneys[cls] = Frame(np.array([sign * j(70, 5), j(55, 5), j(zc, 6)]),
                             np.array([j(28, 3), j(22, 2), j(54, 5)]), rot)
        kidney_warps[cls] = rnd_warp(3.0, 50, 90)

    # Pancreas: a tube along x, head (patient right) → tail (patient left).
    xs = np.array([-55.0, -20.0, 25.0, 85.0]) * s
    ys = np.array([j(-6, 4), j(-22, 4), j(-22, 4), j(14, 5)])
    zs = np.array([j(-22, 4), j(-6, 4), j(4, 4), j(20, 5)])
    pancreas_y = np.polyfit(xs, ys, 3)
    pancreas_z = np.polyfit(xs, zs, 3)
    pancreas_r = np.array([[j(16, 2), j(10, 1.5), j(9, 1.5)], [j(21, 3), j(11, 2), j(10, 1.5)]])
    pancreas_x = (xs[0] - 12 * s, xs[-1] + _u(rng, -5, 5) * s)

    gall_bladder = Frame(np.array([j(-42, 5), j(-48, 5), j(-14, 6)]),
                         np.array([j(15, 2), j(15, 2), j(36, 5)]),
                         rotation_xyz(np.radians(_u(rng, 20, 40)), np.radians(_u(rng, -15, 5)), 0.0))

    aorta = (j(14, 3), j(9, 2), _u(rng, -0.03, 0.03), 15 * s, s * _u(rng, 10.5, 13.0), j(-115, 10))
    ivc = (j(-24, 3), j(9, 2), s * _u(rng, 11, 15), s * _u(rng, 8, 11), dome_r[0] - 8 * s, j(-125, 10))
    spine = (j(45, 2), 22 * s * _u(rng, 0.92, 1.08), 18 * s * _u(rng, 0.92, 1.08), 34 * s * _u(rng, 0.95, 1.05),
             7 * s, _u(rng, 0, 34))
    return Anatomy(
        s=s, body_c=body_c, cavity_r=cavity_r, muscle_mm=muscle, fat_mm=fat,
        fat_anterior_mm=fat * _u(rng, 1.0, 1.6), back_y=back_y, wobble=wobble,
        table_y=back_y + _u(rng, 0, 3),
        dome_r=dome_r, dome_l=dome_l, mediastinum=mediastinum, heart=heart,
        bowel_k=bowel_k, bowel_phi=bowel_phi, gas_k=gas_k, gas_phi=_u(rng, 0, 2 * np.pi),
        gas_level=_u(rng, 0.2, 0.7),
        rib_period=s * _u(rng, 32, 38), rib_slope=s * _u(rng, 25, 40), rib_z0=_u(rng, 0, 35),
        rib_low=-s * _u(rng, 40, 60),
        liver_r=liver_r, liver_l=liver_l, liver_cut=liver_cut, liver_warp=rnd_warp(7.0, 110, 200),
        spleen=spleen, spleen_warp=rnd_warp(5.0, 60, 120),
        stomach=stomach, stomach_bend=_u(rng, 0.25, 0.45), stomach_warp=rnd_warp(6.0, 70, 120),
        stomach_air=_u(rng, 0.15, 0.6),
        kidneys=kidneys, kidney_warps=kidney_warps,
        pancreas_x=pancreas_x, pancreas_y=pancreas_y, pancreas_z=pancreas_z, pancreas_r=pancreas_r,
        pancreas_warp=rnd_warp(2.5, 30, 60),
        gall_bladder=gall_bladder, gb_warp=rnd_warp(2.0, 40, 70),
        aorta=aorta, ivc=ivc, spine=spine,
        psoas=(spine[1] + 14 * s, spine[0] - 4 * s, 25 * s),
        paraspinal=(36 * s, spine[0] + spine[2] + 30 * s, 24 * s, 22 * s),
    )


# ---- painting ------------------------------------------------------------------------

Painter = Callable[[Slab, np.ndarray, np.ndarray], None]


class Canvas:
    """The label map (uint8) and HU volume (float32) being painted, plus the boxes used.

    ``pool``: an optional thread pool; the slabs of one structure are disjoint, so they
    are painted concurrently (numpy releases the GIL), structures still in order.
    """

    def __init__(self, grid: Grid, pool: Executor | None = None) -> None:
        self.grid = grid
        self.pool = pool
        self.labels = np.zeros(grid.shape, dtype=np.uint8)
        self.hu = np.empty(grid.shape, dtype=F32)
        self.boxes: dict[int, list[tuple[slice, slice, slice]]] = {}

    def paint(self, lo: np.ndarray, hi: np.ndarray, fn: Painter, classes: tuple[int, ...] = ()) -> None:
        box = self.grid.box(lo, hi)
        if box is None:
            return
        for c in classes:
            self.boxes.setdefault(c, []).append(box)
        def run(slab: Slab) -> None:
            zs, ys, xs = slab.box
            fn(slab, self.labels[zs, ys, xs], self.hu[zs, ys, xs])

        slabs = list(self.grid.slabs(box))
        if self.pool is None or len(slabs) == 1:
            for slab in slabs:
                run(slab)
        else:
            for _ in self.pool.map(run, slabs):
                pass

    def class_box(self, c: int) -> tuple[slice, slice, slice] | None:
        """The union of the boxes a class was painted in (a superset of its voxels)."""
        boxes = self.boxes.get(c)
        if not boxes:
            return None
        return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def _set(lab: np.ndarray, hu: np.ndarray, mask: np.ndarray, label: int, value) -> None:
    lab[mask] = label
    if np.ndim(value):
        hu[mask] = value[mask]
    else:
        hu[mask] = value


def render_anatomy(canvas: Canvas, a: Anatomy, hu: dict[str, float], extent_z: tuple[float, float],
                   bowel_label: int = 0, spine_z_min: float | None = None) -> None:
    """Paint the whole anatomy into ``canvas`` (labels and noiseless, unblurred HU).

    ``bowel_label`` labels the bowel loops (v2: small intestine; v1 leaves them 0);
    ``spine_z_min`` ends the spine there (v2: at the sacrum; v1 runs it through the scan).
    """
    s = a.s
    canvas.hu.fill(F32(hu["air"]))
    big = 400.0 * max(s, 1.0)
    z_lo, z_hi = extent_z
    outer = a.cavity_r + a.muscle_mm + a.fat_mm * 1.6 + 5
    # Body layers, bowel and ribs over the whole body box.
    canvas.paint(np.array([-outer[0], -outer[1] - 10, z_lo]) + [0, a.body_c[1], 0],
                 np.array([outer[0], a.back_y + 1, z_hi]), lambda sl, lab, h: _paint_body(sl, lab, h, a, hu, bowel_label))
    # Table under the patient (posterior).
    canvas.paint(np.array([-big, a.table_y, z_lo]), np.array([big, a.table_y + 35, z_hi]),
                 lambda sl, lab, h: _paint_table(sl, lab, h, a, hu))
    # Lungs, diaphragm, heart.
    dome_low = min(a.dome_r[0] - a.dome_r[5] * 2.2, a.dome_l[0] - a.dome_l[5] * 2.2)
    canvas.paint(np.array([-a.cavity_r[0], a.body_c[1] - a.cavity_r[1], max(z_lo, dome_low - 5)]),
                 np.array([a.cavity_r[0], a.body_c[1] + a.cavity_r[1], z_hi]),
                 lambda sl, lab, h: _paint_thorax(sl, lab, h, a, hu), (vocab.RIGHT_LUNG, vocab.LEFT_LUNG))
    # Back muscles: psoas and paraspinal.
    px, py, ptop = a.psoas
    canvas.paint(np.array([-px - 30 * s, py - 30 * s, z_lo]), np.array([px + 30 * s, py + 30 * s, ptop + 5]),
                 lambda sl, lab, h: _paint_psoas(sl, lab, h, a, hu))
    qx, qy, qrx, qry = a.paraspinal
    canvas.paint(np.array([-qx - qrx, qy - qry, z_lo]), np.array([qx + qrx, qy + qry, z_hi]),
                 lambda sl, lab, h: _paint_paraspinal(sl, lab, h, a, hu))
    # Organs.
    lo, hi = _bbox([a.liver_r, a.liver_l], a.liver_warp.max_mm + 2)
    canvas.paint(lo, hi, lambda sl, lab, h: _paint_liver(sl, lab, h, a, hu), (vocab.LIVER,))
    lo, hi = _bbox([a.spleen], a.spleen_warp.max_mm + 2)
    canvas.paint(lo, hi, lambda sl, lab, h: _paint_spleen(sl, lab, h, a, hu), (vocab.SPLEEN,))
    lo, hi = _bbox([a.stomach], a.stomach_warp.max_mm + a.stomach_bend * a.stomach.r.max() + 2)
    canvas.paint(lo, hi, lambda sl, lab, h: _paint_stomach(sl, lab, h, a, hu), (vocab.STOMACH,))
    for cls, fr in a.kidneys.items():
        lo, hi = _bbox([fr], a.kidney_warps[cls].max_mm + 2)
        canvas.paint(lo, hi, lambda sl, lab, h, cls=cls: _paint_kidney(sl, lab, h, a, hu, cls), (cls,))
    x0, x1 = a.pancreas_x
    xx = np.linspace(x0, x1, 50)
    yy, zz = np.polyval(a.pancreas_y, xx), np.polyval(a.pancreas_z, xx)
    rmax = a.pancreas_r.max() + a.pancreas_warp.max_mm + 2
    canvas.paint(np.array([x0 - 2, yy.min() - rmax, zz.min() - rmax]), np.array([x1 + 2, yy.max() + rmax, zz.max() + rmax]),
                 lambda sl, lab, h: _paint_pancreas(sl, lab, h, a, hu), (vocab.PANCREAS,))
    lo, hi = _bbox([a.gall_bladder], a.gb_warp.max_mm + 0.3 * a.gall_bladder.r.max() + 2)
    canvas.paint(lo, hi, lambda sl, lab, h: _paint_gall_bladder(sl, lab, h, a, hu), (vocab.GALL_BLADDER,))
    ax0, ay0, _, arise, ar, abif = a.aorta
    reach = ar + 0.35 * max(0.0, abif - z_lo) + 10
    canvas.paint(np.array([ax0 - reach - 15, ay0 - ar - 2, z_lo]), np.array([ax0 + reach + 15, ay0 + arise + ar + 2, z_hi]),
                 lambda sl, lab, h: _paint_aorta(sl, lab, h, a, hu), (vocab.AORTA,))
    vx0, vy0, vrx, vry, vtop, vconf = a.ivc
    reach = vrx + 0.35 * max(0.0, vconf - z_lo) + 10
    canvas.paint(np.array([vx0 - reach, vy0 - 16 * s - vry - 2, z_lo]), np.array([vx0 + reach, vy0 + vry + 2, vtop + vrx]),
                 lambda sl, lab, h: _paint_ivc(sl, lab, h, a, hu), (vocab.POSTCAVA,))
    yv, rx, ry = a.spine[:3]
    canvas.paint(np.array([-rx - 30 * s, yv - ry - 2, z_lo]), np.array([rx + 30 * s, yv + ry + 55 * s, z_hi]),
                 lambda sl, lab, h: _paint_spine(sl, lab, h, a, hu, spine_z_min))


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """((x-cx)/rx)² + ((y-cy)/ry)² as float32."""
    dx = x - F32(cx)
    dx *= dx
    dx *= F32(1 / rx ** 2)
    dy = y - F32(cy)
    dy *= dy
    dy *= F32(1 / ry ** 2)
    dx += dy
    return dx


def _body_xy(slab: Slab, a: Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anatomy x, y scaled by the slow z-modulation of the body outline, and z."""
    x, y, z = slab.xyz()
    amp, w, ph = a.wobble
    scale = np.sin(slab.field((0, 0, w), ph))
    scale *= F32(-amp)
    scale += F32(1)  # 1 / (1 + amp sin) ≈ 1 - amp sin
    x *= scale
    y -= F32(a.body_c[1])
    y *= scale
    y += F32(a.body_c[1])
    return x, y, z


def _paint_body(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float],
               bowel_label: int = 0) -> None:
    x, y, z = _body_xy(slab, a)
    cx, cy = a.body_c
    rx, ry = a.cavity_r
    m, f, fa = a.muscle_mm, a.fat_mm, a.fat_anterior_mm
    cavity = _ellipse(x, y, cx, cy, rx, ry) <= 1
    wall = _ellipse(x, y, cx, cy, rx + m, ry + m) <= 1
    skin = _ellipse(x, y, cx, cy + (f - fa) / 2, rx + m + f, ry + m + (f + fa) / 2) <= 1
    skin &= y <= F32(a.back_y)
    region = skin.view(np.uint8) + wall.view(np.uint8)
    region += cavity.view(np.uint8)
    lut = np.array([h["air"], h["fat"], h["muscle"], h["fat"]], dtype=F32)
    hu[...] = lut[region]
    del skin
    # Ribs: bone in the muscle wall above the lowest rib, helical bands descending anteriorly.
    ribs = wall & ~cavity
    ribs &= z > F32(a.rib_low - a.rib_slope)
    idx = np.nonzero(ribs)
    if idx[0].size:
        xr, yr, zr = x[idx], y[idx] - F32(cy), z[idx]
        phi = np.arctan2(np.abs(xr), yr)  # 0 posterior .. π anterior
        u = (zr + F32(a.rib_slope) * phi - F32(a.rib_z0)) / F32(a.rib_period)
        frac = u - np.floor(u)
        rib_idx = np.floor(u)
        # Lower ribs are shorter (floating ribs end laterally); upper ones reach the cartilages.
        lowest = np.floor((a.rib_low - a.rib_z0) / a.rib_period)
        reach = np.clip(F32(1.2) + F32(0.45) * (rib_idx - F32(lowest)), 0, F32(2.6))
        bone = (frac < F32(0.24)) & (rib_idx >= lowest) & (phi < reach)
        sel = tuple(i[bone] for i in idx)
        hu[sel] = F32(0.5 * (h["bone_cortical"] + h["bone_cancellous"]))
    # Bowel below the diaphragm, in front of the kidneys.
    # Peritoneal cavity: in front of the retroperitoneum (kidneys, vessels, pancreas), deeper
    # at the flanks (the colon's gutters) and below the kidneys (pelvis).
    back = x * x
    back *= F32(35 * a.s / rx ** 2)
    back += np.clip((z + F32(90 * a.s)) * F32(-40 / 60), 0, F32(40 * a.s))
    back += F32(cy - 0.1 * ry)
    bowel = cavity
    bowel &= y < back
    del back
    dz = a.dome_z(x, y)
    dz -= F32(8 * a.s)
    bowel &= z < dz
    del dz
    if not bowel.any():
        return
    t = np.sin(slab.field(a.bowel_k[0], a.bowel_phi[0]))
    for kk, ph in zip(a.bowel_k[1:], a.bowel_phi[1:]):
        t += np.sin(slab.field(kk, ph))
    wallm = bowel & (t > F32(-0.3))
    hu[wallm] = F32(h["bowel_wall"])
    if bowel_label:
        lab[wallm] = bowel_label
    lumen = bowel & (t > F32(0.9))
    g = np.sin(slab.field(a.gas_k, a.gas_phi))
    gas = lumen & (g > F32(0.7))
    lumen &= ~gas
    hu[lumen] = F32(h["bowel_content"])
    hu[gas] = F32(h["gas"])


def _paint_table(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    x, y, _ = slab.xyz()
    d = y - F32(a.table_y) - F32(0.0004) * x * x  # a gently curved top
    shell = ((d >= 0) & (d < 3)) | ((d >= 28) & (d < 31))
    foam = (d >= 3) & (d < 28)
    lab[shell | foam] = 0
    hu[shell] = F32(h["table"])
    hu[foam] = F32(h["table_foam"])


def _paint_thorax(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    x, y, z = _body_xy(slab, a)
    rx, ry = a.cavity_r
    inside = _ellipse(x, y, a.body_c[0], a.body_c[1], rx - 2, ry - 2) <= 1
    height = z - a.dome_z(x, y)
    diaphragm = inside & (height > F32(-3 * a.s)) & (height <= F32(2 * a.s))
    lung = inside & (height > F32(2 * a.s))
    del inside
    mx, my, mrx, mry = a.mediastinum
    lung &= _ellipse(x, y, mx, my, mrx, mry) > 1
    heart_q = a.heart.local(slab)
    hf = sq3(heart_q)
    heart = hf <= 1
    heart &= height > F32(2 * a.s)
    lung &= hf > F32(1.1)
    right = x < F32(mx)
    _set(lab, hu, diaphragm, 0, F32(h["muscle"]))
    _set(lab, hu, lung & right, vocab.RIGHT_LUNG, F32(h["lung"]))
    _set(lab, hu, lung & ~right, vocab.LEFT_LUNG, F32(h["lung"]))
    # Heart: myocardium shell around the blood pool.
    _set(lab, hu, heart, 0, F32(h["muscle"] + 40))
    _set(lab, hu, heart & (hf < F32(0.6)), 0, F32(h["heart"]))


def _paint_psoas(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    x, y, z = slab.xyz()
    px, py, top = a.psoas
    r = F32(5 * a.s) + F32(22 * a.s) * np.clip((F32(top) - z) / F32(150 * a.s), 0, 1)
    r2 = r * r
    yy = (y - F32(py)) ** 2
    m = ((np.abs(x) - F32(px) - r * F32(0.6)) ** 2 + yy <= r2) & (z < F32(top))
    _set(lab, hu, m, 0, F32(h["muscle"]))


def _paint_paraspinal(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    x, y, _ = slab.xyz()
    qx, qy, qrx, qry = a.paraspinal
    m = _ellipse(np.abs(x), y, qx, qy, qrx, qry) <= 1
    m &= y <= F32(a.back_y - a.fat_mm * 0.5)
    _set(lab, hu, m, 0, F32(h["muscle"]))


def _inside_cavity(x: np.ndarray, y: np.ndarray, a: Anatomy, shrink: float = 2.0) -> np.ndarray:
    return _ellipse(x, y, a.body_c[0], a.body_c[1], a.cavity_r[0] - shrink, a.cavity_r[1] - shrink) <= 1


def _paint_liver(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    sines = a.liver_warp.sines(slab)
    f = sq3(a.liver_r.local(slab, a.liver_warp, sines))
    np.minimum(f, sq3(a.liver_l.local(slab, a.liver_warp, sines)), out=f)
    m = f <= 1
    del f
    if not m.any():
        return
    x, y, z = slab.xyz()
    n, off = a.liver_cut
    cut = slab.field(n, -off)
    # Bend the cut into a concave visceral surface: it recedes away from its middle.
    u = np.cross(n, (0.0, 0.0, 1.0))
    u /= np.linalg.norm(u)
    t = slab.field(u, -float(u @ a.liver_r.c))
    t *= t
    t *= F32(0.004 / a.s)
    cut -= t
    del t
    for sn, amp in zip(sines, a.liver_warp.amp):  # the cut surface deforms with the lobes
        cut += F32(n @ amp) * sn
    m &= cut < 0
    m &= _inside_cavity(x, y, a, 3.0 * a.s)
    dz = a.dome_z(x, y)
    dz -= F32(3 * a.s)
    m &= z < dz
    _set(lab, hu, m, vocab.LIVER, F32(h["liver"]))


def _paint_spleen(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    q = a.spleen.local(slab, a.spleen_warp)
    # Concave hilum: push the medial (local -x) face in.
    q[0] -= F32(0.35) * (F32(1) - q[1] * q[1] - q[2] * q[2]).clip(0, 1)
    m = sq3(q) <= 1
    x, y, z = slab.xyz()
    m &= _inside_cavity(x, y, a, 3.0 * a.s)
    dz = a.dome_z(x, y)
    dz -= F32(3 * a.s)
    m &= z < dz
    _set(lab, hu, m, vocab.SPLEEN, F32(h["spleen"]))


def _paint_stomach(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    q = a.stomach.local(slab, a.stomach_warp)
    q[0] -= F32(a.stomach_bend) * q[2] * q[2]  # J shape: the lower part swings medially
    f = sq3(q)
    m = f <= 1
    x, y, z = slab.xyz()
    m &= _inside_cavity(x, y, a, 3.0 * a.s)
    dz = a.dome_z(x, y)
    dz -= F32(3 * a.s)
    m &= z < dz
    if not m.any():
        return
    wall = F32((1 - 5.0 * a.s / a.stomach.r.min()) ** 2)
    lumen = m & (f < wall)
    # Gas rises against gravity (anterior in a supine patient): the non-dependent part of the lumen.
    gdepth = slab.field(a.gravity, -float(a.gravity @ a.stomach.c)) / F32(a.stomach.r[1])
    gas = lumen & (gdepth < F32(-1 + 2 * a.stomach_air))
    _set(lab, hu, m, vocab.STOMACH, F32(h["stomach_wall"]))
    hu[lumen] = F32(h["stomach_content"])
    hu[gas] = F32(h["gas"])


def _paint_kidney(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float], cls: int) -> None:
    fr = a.kidneys[cls]
    q = fr.local(slab, a.kidney_warps[cls])
    f = sq3(q)
    m = f <= 1
    if not m.any():
        return
    # Hilum on the medial side: renal sinus fat, not kidney.
    medial = q[0] if cls == vocab.LEFT_KIDNEY else -q[0]
    sinus = ((medial - F32(0.95)) / F32(0.6)) ** 2 + (q[1] / F32(0.45)) ** 2 + (q[2] / F32(0.4)) ** 2 <= 1
    cortex_in = F32((1 - 6.0 * a.s / fr.r.min()) ** 2)
    _set(lab, hu, m, cls, F32(h["kidney_cortex"]))
    med = m & (f < cortex_in)
    hu[med] = F32(h["kidney_medulla"])
    sinus &= m
    _set(lab, hu, sinus, 0, F32(h["renal_sinus_fat"]))


def _paint_pancreas(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    x, y, z = slab.xyz()
    w = a.pancreas_warp
    for s_, amp in zip(w.sines(slab), w.amp):
        x += F32(amp[0]) * s_
        y += F32(amp[1]) * s_
        z += F32(amp[2]) * s_
    x0, x1 = a.pancreas_x
    u = np.clip((x - F32(x0)) / F32(x1 - x0), 0, 1)
    yc = np.polyval(a.pancreas_y.astype(F32), x)
    zc = np.polyval(a.pancreas_z.astype(F32), x)
    knots = np.array([0.0, 0.3, 1.0], dtype=F32)
    ry = np.interp(u, knots, a.pancreas_r[0].astype(F32)).astype(F32)
    rz = np.interp(u, knots, a.pancreas_r[1].astype(F32)).astype(F32)
    f = ((y - yc) / ry) ** 2 + ((z - zc) / rz) ** 2
    # Rounded ends.
    cap_h, cap_t = F32(a.pancreas_r[0, 0]), F32(a.pancreas_r[0, 2])
    f += (np.maximum(F32(x0) + cap_h - x, 0) / cap_h) ** 2
    f += (np.maximum(x - F32(x1) + cap_t, 0) / cap_t) ** 2
    _set(lab, hu, f <= 1, vocab.PANCREAS, F32(h["pancreas"]))


def _paint_gall_bladder(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    q = a.gall_bladder.local(slab, a.gb_warp)
    # Pear: wider at the fundus (local -z, anterior-inferior).
    widen = F32(1) - F32(0.25) * q[2]
    q[0] /= widen
    q[1] /= widen
    _set(lab, hu, sq3(q) <= 1, vocab.GALL_BLADDER, F32(h["gall_bladder"]))


def _paint_aorta(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    x, y, z = slab.xyz()
    x0, y0, slope, rise, r, zbif = a.aorta
    top_y = a.dome_l[0] - 60 * a.s
    xc = F32(x0) + F32(slope) * z
    yc = F32(y0) + F32(rise) * np.clip((z - F32(top_y)) / F32(60 * a.s), 0, 1)
    rr = F32(r) * (F32(1) + F32(0.12) * np.clip((z - F32(top_y)) / F32(80 * a.s), 0, 1))
    main = ((x - xc) ** 2 + (y - yc) ** 2 <= rr * rr) & (z >= F32(zbif))
    _set(lab, hu, main, vocab.AORTA, F32(h["aorta"]))
    below = z < F32(zbif)
    if below.any():
        off = F32(0.35) * (F32(zbif) - z)
        ri = F32(0.6 * r)
        iliac = below & (((np.abs(x - xc) - off) ** 2 + (y - yc + F32(0.1) * off) ** 2) <= ri * ri)
        _set(lab, hu, iliac, 0, F32(h["aorta"]))


def _paint_ivc(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float]) -> None:
    x, y, z = slab.xyz()
    x0, y0, rx, ry, top, conf = a.ivc
    yc = F32(y0) - F32(16 * a.s) * np.clip(z / F32(90 * a.s), 0, 1)  # moves anterior into the liver
    f = ((x - F32(x0)) / F32(rx)) ** 2 + ((y - yc) / F32(ry)) ** 2
    main = (f <= 1) & (z >= F32(conf)) & (z <= F32(top))
    _set(lab, hu, main, vocab.POSTCAVA, F32(h["ivc"]))
    below = z < F32(conf)
    if below.any():
        off = F32(0.35) * (F32(conf) - z)
        ri = F32(0.65 * rx)
        iliac = below & ((np.abs(x - F32(x0) - F32(10 * a.s)) - off) ** 2 + (y - yc + F32(0.2) * off) ** 2 <= ri * ri)
        _set(lab, hu, iliac, 0, F32(h["ivc"]))


def _paint_spine(slab: Slab, lab: np.ndarray, hu: np.ndarray, a: Anatomy, h: dict[str, float],
                z_min: float | None = None) -> None:
    x, y, z = slab.xyz()
    if z_min is not None and float(z.max()) < z_min:
        return
    yv, rx, ry, period, disc, phase = a.spine
    s = a.s
    level = (z - F32(phase)) / F32(period)
    level -= np.floor(level)
    is_disc = level < F32(disc / period)
    body = _ellipse(x, y, 0.0, yv, rx, ry)
    vb = body <= 1
    if z_min is not None:
        vb &= z >= F32(z_min)
    cortex_in = F32((1 - 2.5 / min(rx, ry)) ** 2)
    _set(lab, hu, vb, 0, F32(h["bone_cortical"]))
    hu[vb & (body < cortex_in)] = F32(h["bone_cancellous"])
    hu[vb & is_disc] = F32(h["disc"])
    # Posterior elements: arch around the canal, spinous and transverse processes (not at disc levels).
    cy = yv + ry + 11 * s
    ring = _ellipse(x, y, 0.0, cy, 14 * s, 12 * s)
    canal = ring <= 1
    arch = (ring <= F32(1.9)) & ~canal
    spinous = _ellipse(x, y, 0.0, cy + 24 * s, 4.5 * s, 16 * s) <= 1
    transverse = _ellipse(x, y, 0.0, cy - 2 * s, 38 * s, 5 * s) <= 1
    transverse &= level > F32(0.45)
    bone = (arch | spinous | transverse) & ~is_disc
    if z_min is not None:
        above = z >= F32(z_min)
        bone &= above
        canal &= above
    _set(lab, hu, bone, 0, F32(h["bone_cortical"] * 0.85))
    _set(lab, hu, canal, 0, F32(h["csf"]))
