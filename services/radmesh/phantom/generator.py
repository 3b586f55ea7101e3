"""Synthetic contrast-enhanced CT phantoms of the abdomen and lower chest, with exact truth.

``generate(seed)`` draws one case: a procedural anatomy (body wall with subcutaneous
fat and muscle, ribs, spine, bowel, table, liver 6, spleen 1, kidneys 2/3, pancreas
11, gall bladder 4, stomach 7, aorta 8, IVC 9, lung bases 16/17; see
:mod:`radmesh.phantom.anatomy`), lesions as exact ellipsoids (liver tumours 27 ×0–3,
pancreas tumour 28, kidney tumour 26, kidney cyst 32, lung nodule 30; see
:mod:`radmesh.phantom.lesions`, whose docstring states the location conventions),
portal-venous tissue values randomised per case, a smooth shape deformation per
organ, a random pose of the patient, an optional oblique grid, a Gaussian PSF
(anisotropic: the slice profile grows with slice thickness) and Gaussian noise.

Arrays are (z, y, x); geometry is ITK/LPS (:class:`radmesh.common.volume.Geometry`).
Sizes are in millimetres throughout, so small grids (say 128² at 3 mm) give the same
anatomy, coarser. The same seed and config give byte-identical arrays and truth:
each stage draws from its own stream of ``SeedSequence(seed)`` (acquisition,
anatomy, tissue values, lesions, noise), so switching noise or blur off, or
forcing lesions, leaves the rest of the case unchanged.

Defaults: in-plane matrix 512² with field of view 307–512 mm (spacing 0.6–1.0 mm;
for another matrix size the spacing scales so the field of view stays in that
range), slice thickness drawn from 0.8–5 mm, slice count for 150–300 mm of
craniocaudal coverage (at most 300 slices), oblique grid (random rotation of 5–20°)
with probability 0.3. Label voxels mark shapes containing the voxel centre; lesion
labels override their host organ. The label map is never blurred.

``PhantomConfig(version=2)`` draws a *v2* case (:mod:`radmesh.phantom.anatomy_v2`,
:mod:`radmesh.phantom.phases`): all 32 vocabulary classes can appear (the pelvis,
bowel, vessels, adrenals and esophagus, bone everywhere the abdomen has it), in one of
four contrast phases with lesions hypo-, iso- or hyperattenuating, cystic, necrotic or
rim-enhancing; an acquisition region (abdomen, abdomen–pelvis, chest–abdomen, chest,
pelvis, or a thin slab of 20–40 slices); slice thickness 0.625–5 mm; a reconstruction
kernel (soft, standard, sharp: the softer, the wider the PSF and the smoother the noise;
the sharper, the more of the noise is white); and, in 12 % of cases, metal (a clip or pedicle screws) with its streaks.
v1 cases are unchanged by all of this, byte for byte.

``write_phantom(phantom, DIR)`` writes DIR/ct.nii.gz (int16 HU), DIR/labels.nii.gz
(uint8), DIR/pancreas_subregions.nii.gz (uint8: 0 outside pancreas ∪ pancreas
tumour, 1 head, 2 body, 3 tail) and DIR/truth.json, each atomically.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.fileio import write_text_atomic
from radmesh.common.imageio import write_volume
from radmesh.common.volume import Geometry, Volume
from radmesh.phantom import anatomy_v2
from radmesh.phantom import lesions as lesions_mod
from radmesh.phantom.anatomy import (F32, Canvas, Grid, axis_angle, random_unit, render_anatomy, rotation_xyz,
                                     sample_anatomy, sample_hu)
from radmesh.phantom.phases import PHASE_P, PHASES, sample_phase_hu

__all__ = ["Phantom", "PhantomConfig", "generate", "write_phantom", "ORGAN_CLASSES", "LESION_CLASSES"]

ORGAN_CLASSES: tuple[int, ...] = (vocab.SPLEEN, vocab.RIGHT_KIDNEY, vocab.LEFT_KIDNEY, vocab.GALL_BLADDER,
                                  vocab.LIVER, vocab.STOMACH, vocab.AORTA, vocab.POSTCAVA, vocab.PANCREAS,
                                  vocab.RIGHT_LUNG, vocab.LEFT_LUNG)
LESION_CLASSES: tuple[int, ...] = tuple(sorted(lesions_mod.LESION_SPECS))

THICKNESSES_MM = (0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
FOV_MM = (0.6 * 512, 1.0 * 512)
COVERAGE_MM = (150.0, 300.0)
MAX_SLICES = 300
OBLIQUE_P = 0.3
OBLIQUE_DEG = (5.0, 20.0)
NOISE_HU = (8.0, 20.0)
PSF_MM = (0.35, 0.6)
# v2 acquisitions: region → anatomy-frame z range (mm at body scale 1; 0 ≈ L1)
REGIONS_V2: dict[str, tuple[float, float]] = {
    "abdomen": (-150.0, 110.0), "abdomen-pelvis": (-380.0, 110.0), "chest-abdomen": (-150.0, 280.0),
    "chest": (-20.0, 280.0), "pelvis": (-390.0, -150.0), "slab": (-380.0, 250.0),
}
REGION_P = (0.3, 0.25, 0.12, 0.08, 0.1, 0.15)
SLAB_SLICES = (20, 40)
THICKNESSES_V2_MM = (0.625, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)
# Reconstruction kernel → (fraction of the noise σ that is white, extra PSF σ in mm): a soft kernel
# blurs both the anatomy and the noise more, a sharp one keeps edges and leaves grainy noise.
KERNELS = {"soft": (0.0, 0.5), "standard": (0.35, 0.2), "sharp": (0.7, 0.0)}
METAL_P = 0.12
ORGAN_CLASSES_V2: tuple[int, ...] = tuple(c.index for c in vocab.CLASSES if not c.is_lesion)
LESION_CLASSES_V2: tuple[int, ...] = tuple(sorted(lesions_mod.V2_LESION_SPECS))
STAGES = ("acquisition", "anatomy", "lesions", "sub-regions", "blur and noise", "truth")


@dataclass(frozen=True)
class PhantomConfig:
    """What a caller may pin down; ``None`` means drawn at random from the seed.

    in_plane_size:   columns = rows of the grid (default 512).
    spacing_xyz_mm:  (x, y, z) voxel size in mm; None = random (see module docstring).
    slices:          number of slices; None = from a random 150–300 mm coverage (≤ 300).
    oblique:         True/False forces an oblique/axis-aligned grid; None = oblique with p = 0.3.
    lesions:         lesion classes that must be present (others absent); a class listed n
                     times gives n lesions of it. None = random presence.
    noise, blur:     add Gaussian noise / apply the PSF.
    version:         1 (the phantoms the shipped weights were trained on) or 2 (see module docstring).
    phase, region, kernel: v2 only: contrast phase (PHASES), acquisition region (REGIONS_V2) and
                     reconstruction kernel (KERNELS); None = random.
    """

    in_plane_size: int = 512
    spacing_xyz_mm: tuple[float, float, float] | None = None
    slices: int | None = None
    oblique: bool | None = None
    lesions: tuple[int, ...] | None = None
    noise: bool = True
    blur: bool = True
    version: int = 1
    phase: str | None = None
    region: str | None = None
    kernel: str | None = None

    def validate(self) -> None:
        if self.version not in (1, 2):
            raise InvalidInputError(f"version must be 1 or 2, got {self.version!r}")
        if self.version == 1 and (self.phase, self.region, self.kernel) != (None, None, None):
            raise InvalidInputError("phase, region and kernel exist only for version 2 phantoms")
        if self.kernel is not None and self.kernel not in KERNELS:
            raise InvalidInputError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.phase is not None and self.phase not in PHASES:
            raise InvalidInputError(f"phase must be one of {', '.join(PHASES)}, got {self.phase!r}")
        if self.region is not None and self.region not in REGIONS_V2:
            raise InvalidInputError(f"region must be one of {', '.join(REGIONS_V2)}, got {self.region!r}")
        if not isinstance(self.in_plane_size, (int, np.integer)) or not 16 <= self.in_plane_size <= 2048:
            raise InvalidInputError(f"in_plane_size must be an integer in 16..2048, got {self.in_plane_size!r}")
        if self.spacing_xyz_mm is not None:
            sp = tuple(self.spacing_xyz_mm)
            if len(sp) != 3 or not all(np.isfinite(sp)) or min(sp) <= 0:
                raise InvalidInputError(f"spacing_xyz_mm must be three positive mm values, got {self.spacing_xyz_mm!r}")
        if self.slices is not None and (not isinstance(self.slices, (int, np.integer)) or not 1 <= self.slices <= 2048):
            raise InvalidInputError(f"slices must be an integer in 1..2048, got {self.slices!r}")
        if self.lesions is not None:
            specs = lesions_mod.LESION_SPECS if self.version == 1 else lesions_mod.V2_LESION_SPECS
            bad = [c for c in self.lesions if c not in specs]
            if bad:
                raise InvalidInputError(f"lesions must be drawn from {sorted(specs)}, got {bad}")


@dataclass
class Phantom:
    """One generated case: CT (int16 HU), labels (uint8), pancreas sub-regions (uint8), truth."""

    ct: Volume
    labels: Volume
    pancreas_subregions: Volume
    truth: dict


def generate(seed: int, config: PhantomConfig | None = None, progress: bool = False) -> Phantom:
    """Generate the phantom for ``seed`` (a non-negative integer) under ``config``."""
    cfg = config or PhantomConfig()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    cfg.validate()
    v2 = cfg.version == 2
    # Each stage its own stream; v2's extra stream is the sixth child, so the first five are v1's.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(6 if v2 else 5)]
    r_acq, r_anat, r_hu, r_les, r_noise = streams[:5]
    bar = tqdm(total=len(STAGES), desc=f"phantom {seed}", disable=not progress, leave=False)
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="phantom")
    try:
        bar.set_postfix_str(STAGES[0])
        acq = _acquisition_v2(r_acq, cfg) if v2 else _acquisition(r_acq, cfg)
        anatomy = sample_anatomy(r_anat, acq["fov_xy_mm"])
        hu = sample_phase_hu(r_hu, acq["phase"]) if v2 else sample_hu(r_hu)
        geometry, grid, pose = _place_grid(r_acq, acq, anatomy, cfg)
        anatomy.gravity = pose["rotation"].T @ np.array([0.0, 1.0, 0.0])
        extras = anatomy_v2.sample_v2(streams[5], anatomy) if v2 else None
        bar.update(1)

        bar.set_postfix_str(STAGES[1])
        canvas = Canvas(grid, pool)
        extent = _z_extent(grid)
        if v2:
            render_anatomy(canvas, anatomy, hu, extent, bowel_label=vocab.INTESTINE, spine_z_min=extras.sacrum_top_z)
            canvas.boxes[vocab.INTESTINE] = [tuple(slice(0, n) for n in grid.shape)]
            anatomy_v2.render_v2(canvas, anatomy, extras, hu, extent, acq["phase"])
            acq["metal"] = (anatomy_v2.paint_metal(streams[5], canvas, anatomy, hu, extent)
                            if streams[5].random() < METAL_P else dict(kind="none"))
        else:
            render_anatomy(canvas, anatomy, hu, extent)
        bar.update(1)

        bar.set_postfix_str(STAGES[2])
        classes = (lesions_mod.plan(r_les, cfg.lesions, lesions_mod.V2_LESION_SPECS, lesions_mod.V2_PLACEMENT_ORDER)
                   if v2 else lesions_mod.plan(r_les, cfg.lesions))
        placed = lesions_mod.place_all(r_les, canvas, geometry, hu, classes, required=cfg.lesions is not None,
                                       patterns=v2)
        bar.update(1)

        bar.set_postfix_str(STAGES[3])
        labels = canvas.labels
        sub, pancreas_axis = lesions_mod.pancreas_subregions(labels, geometry, canvas.class_box(vocab.PANCREAS))
        locations = lesions_mod.locate(placed, labels, geometry, canvas, pancreas_axis)
        bar.update(1)

        bar.set_postfix_str(STAGES[4])
        ct, blur_sigma = _acquire(canvas.hu, geometry, acq, cfg, r_noise, pool)
        canvas.hu = None
        bar.update(1)

        bar.set_postfix_str(STAGES[5])
        boxes = {c: canvas.class_box(c) for c in (ORGAN_CLASSES_V2 if v2 else ORGAN_CLASSES)}
        truth = _truth(seed, cfg, geometry, hu, labels, placed, locations, acq, pose, blur_sigma, boxes)
        bar.update(1)
    finally:
        pool.shutdown()
        bar.close()
    return Phantom(ct=Volume(ct, geometry), labels=Volume(labels, geometry),
                   pancreas_subregions=Volume(sub, geometry), truth=truth)


def write_phantom(phantom: Phantom, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the four files into ``out_dir`` (created if needed); returns {"ct", "labels", "pancreas_subregions", "truth"}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "ct": write_volume(phantom.ct, out / "ct.nii.gz"),
        "labels": write_volume(phantom.labels, out / "labels.nii.gz"),
        "pancreas_subregions": write_volume(phantom.pancreas_subregions, out / "pancreas_subregions.nii.gz"),
    }
    paths["truth"] = write_text_atomic(out / "truth.json", json.dumps(phantom.truth, indent=1) + "\n")
    return paths


# ---- acquisition ------------------------------------------------------------------

def _acquisition(rng: np.random.Generator, cfg: PhantomConfig) -> dict:
    n = int(cfg.in_plane_size)
    fov = float(rng.uniform(*FOV_MM))
    thick = float(rng.choice(THICKNESSES_MM))
    coverage = float(rng.uniform(*COVERAGE_MM))
    oblique = bool(rng.random() < OBLIQUE_P)
    oblique_axis = random_unit(rng)
    oblique_deg = float(rng.uniform(*OBLIQUE_DEG))
    if cfg.spacing_xyz_mm is None:
        sp = (fov / n, fov / n, thick)
    else:
        sp = tuple(float(v) for v in cfg.spacing_xyz_mm)
    if cfg.slices is None:
        slices = int(np.clip(round(coverage / sp[2]), 1, MAX_SLICES))
    else:
        slices = int(cfg.slices)
    if cfg.oblique is not None:
        oblique = bool(cfg.oblique)
    return dict(
        shape_zyx=(slices, n, n), spacing_xyz_mm=sp, fov_xy_mm=(n * sp[0], n * sp[1]),
        oblique=oblique, direction=axis_angle(oblique_axis, np.radians(oblique_deg)) if oblique else np.eye(3),
        oblique_deg=oblique_deg if oblique else 0.0,
        noise_sigma_hu=float(rng.uniform(*NOISE_HU)), psf_sigma_mm=float(rng.uniform(*PSF_MM)),
    )


def _acquisition_v2(rng: np.random.Generator, cfg: PhantomConfig) -> dict:
    """v2: a region, a phase, a kernel; the slice count follows the region's extent (a slab: 20–40)."""
    # Drawn either way, so pinning one leaves the rest of the case unchanged.
    region = list(REGIONS_V2)[int(rng.choice(len(REGIONS_V2), p=REGION_P))]
    region = cfg.region or region
    phase = PHASES[int(rng.choice(len(PHASES), p=PHASE_P))]
    phase = cfg.phase or phase
    kernel = list(KERNELS)[int(rng.integers(len(KERNELS)))]
    kernel = cfg.kernel or kernel  # drawn either way, so pinning it leaves the rest of the case unchanged
    n = int(cfg.in_plane_size)
    fov = float(rng.uniform(*FOV_MM))
    thick = float(rng.choice(THICKNESSES_V2_MM))
    sp = (fov / n, fov / n, thick) if cfg.spacing_xyz_mm is None else tuple(float(v) for v in cfg.spacing_xyz_mm)
    lo, hi = REGIONS_V2[region]
    if cfg.slices is not None:
        slices = int(cfg.slices)
    elif region == "slab":
        slices = int(rng.integers(SLAB_SLICES[0], SLAB_SLICES[1] + 1))
    else:
        slices = int(np.clip(round((hi - lo) * rng.uniform(0.9, 1.05) / sp[2]), 1, MAX_SLICES))
    oblique = bool(rng.random() < OBLIQUE_P) if cfg.oblique is None else bool(cfg.oblique)
    oblique_axis = random_unit(rng)
    oblique_deg = float(rng.uniform(*OBLIQUE_DEG))
    return dict(
        shape_zyx=(slices, n, n), spacing_xyz_mm=sp, fov_xy_mm=(n * sp[0], n * sp[1]),
        oblique=oblique, direction=axis_angle(oblique_axis, np.radians(oblique_deg)) if oblique else np.eye(3),
        oblique_deg=oblique_deg if oblique else 0.0,
        noise_sigma_hu=float(rng.uniform(*NOISE_HU)), psf_sigma_mm=float(rng.uniform(*PSF_MM)) + KERNELS[kernel][1],
        region=region, region_z_mm=(lo, hi), phase=phase, kernel=kernel, white_fraction=KERNELS[kernel][0],
        z_draw=float(rng.random()),
    )


def _place_grid(rng: np.random.Generator, acq: dict, anatomy, cfg: PhantomConfig) -> tuple[Geometry, Grid, dict]:
    nz, ny, nx = acq["shape_zyx"]
    sp = np.asarray(acq["spacing_xyz_mm"])
    cover = nz * sp[2]
    core_lo, core_hi = anatomy.core_z()
    if "region_z_mm" in acq:  # v2: anywhere the region allows (a region longer than the scan: a part of it)
        lo, hi = (v * anatomy.s for v in acq["region_z_mm"])
        z_lo = lo + acq["z_draw"] * (hi - lo - cover)
    elif cover >= core_hi - core_lo:
        lo_min = max(core_hi - cover, -230.0 * anatomy.s)
        lo_max = core_lo
        z_lo = float(rng.uniform(min(lo_min, lo_max), lo_max))
    else:
        z_lo = float((core_lo + core_hi) / 2 - cover / 2 + rng.uniform(-10, 10) * anatomy.s)
    centre_anat = np.array([rng.uniform(-10, 10), anatomy.body_c[1] + rng.uniform(-10, 10), z_lo + cover / 2])
    rot = rotation_xyz(*np.radians([rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(-6, 6)]))
    trans = np.array([rng.uniform(-30, 30), rng.uniform(-30, 30), rng.uniform(-500, 100)])
    direction = acq["direction"]
    centre_lps = rot @ centre_anat + trans
    half = sp * (np.array([nx, ny, nz]) - 1) / 2
    origin = centre_lps - direction @ half
    geometry = Geometry(shape_zyx=(nz, ny, nx), spacing_xyz_mm=tuple(sp), origin_lps_mm=tuple(origin),
                        direction=direction)
    # anatomy = Rᵀ (LPS − T), LPS = origin + D diag(sp) (i, j, k)
    m = rot.T @ geometry.direction @ np.diag(sp)
    b = rot.T @ (np.asarray(geometry.origin_lps_mm) - trans)
    return geometry, Grid(geometry.shape_zyx, m, b), dict(rotation=rot, translation=trans)


def _z_extent(grid: Grid) -> tuple[float, float]:
    nz, ny, nx = grid.shape
    corners = np.array([[i, j, k] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)], dtype=float)
    z = (corners @ grid.m.T + grid.b)[:, 2]
    return float(z.min()) - 5, float(z.max()) + 5


def _gauss_weights(sigma: float, truncate: float) -> np.ndarray:
    """scipy's normalised 1-D Gaussian kernel (radius int(truncate·σ + 0.5))."""
    if sigma <= 0:
        return np.ones(1)
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 samples by Box–Muller (about twice numpy's float32 ziggurat here)."""
    n = int(np.prod(shape))
    h = (n + 1) // 2
    r = rng.random(h, dtype=F32)
    np.subtract(F32(1), r, out=r)  # (0, 1]
    np.log(r, out=r)
    r *= F32(-2)
    np.sqrt(r, out=r)
    theta = rng.random(h, dtype=F32)
    theta *= F32(2 * np.pi)
    out = np.empty(2 * h, dtype=F32)
    np.cos(theta, out=out[:h])
    np.sin(theta, out=out[h:])
    out[:h] *= r
    out[h:] *= r
    return out[:n].reshape(shape)


CHUNK_SLICES = 8


def _acquire(hu: np.ndarray, geometry: Geometry, acq: dict, cfg: PhantomConfig, rng: np.random.Generator,
             pool: ThreadPoolExecutor) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Noise, PSF blur and quantisation of the painted HU volume → int16 CT.

    Noise goes in before the PSF, so it is correlated like CT noise, scaled so the
    blurred noise has the drawn σ. The separable Gaussian runs in fixed chunks of
    slices (in-plane with scipy's gaussian_filter1d, then across slices as a weighted
    sum of neighbouring slices, edges replicated like mode="nearest"), chunks in
    parallel; each chunk's noise has its own stream, so the result does not depend on
    scheduling. Returns (ct, blur σ (x, y, z) mm).
    """
    nz = hu.shape[0]
    sp_xyz = np.asarray(geometry.spacing_xyz_mm)
    psf = acq["psf_sigma_mm"]
    # Pixel/slice sensitivity profile: FWHM ≈ the sampling interval (σ = FWHM / 2.355), added to the PSF.
    sigma_mm = np.sqrt(psf ** 2 + (sp_xyz / 2.355) ** 2) if cfg.blur else np.zeros(3)
    sx, sy, sz = (sigma_mm / sp_xyz) if cfg.blur else (0.0, 0.0, 0.0)
    truncate = 3.0
    wz = _gauss_weights(sz, truncate)
    gain = float(np.prod([(_gauss_weights(s, truncate) ** 2).sum() for s in (sx, sy, sz)]))
    chunks = [(k, min(nz, k + CHUNK_SLICES)) for k in range(0, nz, CHUNK_SLICES)]
    seeds = np.random.SeedSequence(int(rng.integers(2 ** 63))).spawn(len(chunks))
    scale = F32(acq["noise_sigma_hu"] / np.sqrt(gain))
    white = float(acq.get("white_fraction", 0.0)) if cfg.noise else 0.0
    if white > 0:
        # A sharper kernel: part of the noise variance is white (added after the PSF), the rest blurred.
        scale *= F32(np.sqrt(1 - white ** 2))
        white_seeds = np.random.SeedSequence(int(rng.integers(2 ** 63))).spawn(len(chunks))
        white_sigma = F32(acq["noise_sigma_hu"] * white)

    def noise_and_plane(c: int) -> None:
        k0, k1 = chunks[c]
        block = hu[k0:k1]
        if cfg.noise:
            n = _normal(np.random.default_rng(seeds[c]), block.shape)
            n *= scale
            block += n
        if cfg.blur:
            t = ndimage.gaussian_filter1d(block, sx, axis=2, truncate=truncate, mode="nearest", output=F32)
            ndimage.gaussian_filter1d(t, sy, axis=1, truncate=truncate, mode="nearest", output=block)

    ct = np.empty(hu.shape, dtype=np.int16)
    r = len(wz) // 2

    def across(c: int) -> None:
        k0, k1 = chunks[c]
        acc = hu[k0:k1] * F32(wz[r])
        for t in range(1, r + 1):
            lo = np.clip(np.arange(k0 - t, k1 - t), 0, nz - 1)
            hi = np.clip(np.arange(k0 + t, k1 + t), 0, nz - 1)
            pair = hu[lo] + hu[hi]
            pair *= F32(wz[r + t])
            acc += pair
        if white > 0:
            n = _normal(np.random.default_rng(white_seeds[c]), acc.shape)
            n *= white_sigma
            acc += n
        np.rint(acc, out=acc)
        np.clip(acc, -1024, 3071, out=acc)
        ct[k0:k1] = acc

    for _ in pool.map(noise_and_plane, range(len(chunks))):
        pass
    for _ in pool.map(across, range(len(chunks))):
        pass
    return ct, tuple(float(s) for s in sigma_mm)


# ---- truth ------------------------------------------------------------------------

def _truth(seed: int, cfg: PhantomConfig, geometry: Geometry, hu: dict[str, float], labels: np.ndarray,
           placed: list, locations: list[dict], acq: dict, pose: dict, blur_sigma, boxes: dict) -> dict:
    counts = {}
    for c, box in boxes.items():  # a class is only ever painted inside its boxes
        counts[c] = 0 if box is None else int(np.count_nonzero(labels[box] == c))
    vox_ml = geometry.voxel_volume_mm3 / 1000.0
    organs = [dict(class_index=int(c), name=vocab.get(c).name, voxel_count=int(counts[c]),
                   volume_ml=float(counts[c] * vox_ml))
              for c in boxes if counts[c] > 0]
    lesion_records = []
    for i, (les, loc) in enumerate(zip(placed, locations), start=1):
        a, b, c = (float(v) for v in les.semi_axes)
        lesion_records.append(dict(
            id=i, class_index=int(les.class_index), name=vocab.get(les.class_index).name,
            host_class_index=int(les.host),
            centre_lps_mm=[float(v) for v in les.centre_lps],
            semi_axes_mm=[a, b, c],
            rotation=[[float(v) for v in row] for row in les.rotation],
            volume_ml=float(4.0 / 3.0 * np.pi * a * b * c / 1000.0),
            max_diameter_mm=float(2 * max(a, b, c)),
            voxel_count=int(les.voxel_count),
            voxel_volume_ml=float(les.voxel_count * vox_ml),
            enclosed=bool(les.enclosed),
            location=loc["location"], subregion=loc["subregion"], laterality=loc["laterality"],
            location_margin=float(loc["location_margin"]),
        ))
        if les.pattern is not None:
            lesion_records[-1]["pattern"] = les.pattern
    config = asdict(cfg)
    for k, v in config.items():
        if isinstance(v, tuple):
            config[k] = list(v)
    return dict(
        seed=int(seed),
        config=config,
        geometry=dict(shape_zyx=list(geometry.shape_zyx), spacing_xyz_mm=list(geometry.spacing_xyz_mm),
                      origin_lps_mm=list(geometry.origin_lps_mm),
                      direction=[[float(v) for v in row] for row in geometry.direction]),
        hu=hu,
        acquisition=dict(noise_sigma_hu=float(acq["noise_sigma_hu"]) if cfg.noise else 0.0,
                         psf_sigma_mm=float(acq["psf_sigma_mm"]) if cfg.blur else 0.0,
                         blur_sigma_xyz_mm=list(blur_sigma), oblique=bool(acq["oblique"]),
                         oblique_angle_deg=float(acq["oblique_deg"]),
                         pose_rotation=[[float(v) for v in row] for row in pose["rotation"]],
                         pose_translation_mm=[float(v) for v in pose["translation"]],
                         **({} if "region" not in acq else dict(
                             region=acq["region"], phase=acq["phase"], kernel=acq["kernel"],
                             metal=acq.get("metal", dict(kind="none"))))),
        organs=organs,
        lesions=lesion_records,
    )
