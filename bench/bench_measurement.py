#!/usr/bin/env python
"""Benchmark: radmesh ``measure()`` against pyradiomics shape features on the same lesions.

A phantom abdomen (``radmesh.phantom``: organs and eight lesions, CT in HU with
noise and blur) is generated on a ``size × size × slices`` grid (default 512 × 512 ×
300, 0.78 × 0.78 × 1.5 mm). Then:

- radmesh: one ``measure(ct, labels)`` call — every class present, every lesion
  with volume, exact max 3D diameter, RECIST axes, HU statistics, host organ,
  attenuation and location (best of ``--repeat`` runs);
- pyradiomics 3.0.1: ``RadiomicsFeatureExtractor`` with only the ``shape`` class
  enabled (``additionalInfo=False``, so no image hashing), run once per lesion on
  a label map in which every lesion has its own label (built beforehand, not
  timed). This is how pyradiomics computes per-lesion shape features on a full
  scan: it checks the mask, crops to the lesion and builds the mesh;
- for reference, pyradiomics' ``RadiomicsShape`` alone on lesion masks we crop for
  it beforehand (its kernel only: no checks, no cropping — not the headline).

Prints a per-lesion table (max 3D diameter from both, voxel-centre vs mesh
convention) and the speed ratio. Writes no files.

    python bench/bench_measurement.py [--slices 300] [--size 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy import ndimage

from radmesh.common import vocabulary as V
from radmesh.common.imageio import to_sitk
from radmesh.common.volume import Geometry, Volume
from radmesh.measurement.core import measure
from radmesh.phantom.generator import PhantomConfig, generate

# Several lesions of every kind the phantom draws, with three liver tumours and two lung nodules.
LESIONS = (V.LIVER_TUMOR, V.LIVER_TUMOR, V.LIVER_TUMOR, V.PANCREAS_TUMOR, V.KIDNEY_TUMOR, V.KIDNEY_CYST,
           V.LUNG_TUMOR, V.LUNG_TUMOR)


def build(size: int, slices: int, seed: int = 0) -> tuple[Volume, Volume]:
    """A phantom abdomen on a size×size×slices grid covering 400 × 400 × 450 mm (0.78 × 0.78 × 1.5 mm at 512² × 300)."""
    spacing = (0.78 * 512 / size, 0.78 * 512 / size, 1.5 * 300 / slices)
    ph = generate(seed, PhantomConfig(in_plane_size=size, spacing_xyz_mm=spacing, slices=slices, oblique=False,
                                      lesions=LESIONS))
    return ph.ct, ph.labels


def lesion_label_map(labels: Volume) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
    """Every lesion (26-connected component of a lesion class) with its own label, 1..N."""
    lab = labels.array
    out = np.zeros(lab.shape, dtype=np.uint8)
    info = []
    boxes = ndimage.find_objects(lab, max_label=V.NUM_CLASSES)
    for c in V.LESION_INDICES:
        sl = boxes[c - 1]
        if sl is None:
            continue
        comp, n = ndimage.label(lab[sl] == c, structure=np.ones((3, 3, 3), bool))
        for i in range(1, n + 1):
            idx = np.argwhere(comp == i) + [s.start for s in sl]
            lid = len(info) + 1
            out[tuple(idx.T)] = lid
            info.append((lid, c, labels.geometry.to_lps(idx.mean(axis=0)[None])[0]))
    return out, info


def to_image(array: np.ndarray, g: Geometry, offset_zyx=(0, 0, 0)):
    """``array`` as a SimpleITK image whose first voxel sits at ``offset_zyx`` of grid ``g``."""
    origin = tuple(g.to_lps(np.asarray(offset_zyx, dtype=float)[None])[0])
    return to_sitk(Volume(array, Geometry(array.shape, g.spacing_xyz_mm, origin, g.direction)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=300, help="number of axial slices (default 300)")
    p.add_argument("--size", type=int, default=512, help="in-plane size in pixels (default 512)")
    p.add_argument("--repeat", type=int, default=3, help="radmesh runs; the best is reported (default 3)")
    p.add_argument("--radiomics-repeat", type=int, default=1,
                   help="pyradiomics runs per lesion; the best is reported (default 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.slices < 40 or args.size < 64 or args.repeat < 1 or args.radiomics_repeat < 1:
        p.error("need --slices ≥ 40, --size ≥ 64, --repeat ≥ 1, --radiomics-repeat ≥ 1")

    t0 = time.perf_counter()
    ct, labels = build(args.size, args.slices, args.seed)
    g = labels.geometry
    print(f"grid {g.shape_zyx[2]}×{g.shape_zyx[1]}×{g.shape_zyx[0]} (x×y×z), spacing "
          f"{'×'.join(f'{s:.3g}' for s in g.spacing_xyz_mm)} mm, built in {time.perf_counter() - t0:.1f} s")

    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = measure(ct, labels)
        times.append(time.perf_counter() - t)
    t_radmesh = min(times)
    ours = [(s.class_index, les) for s in result.structures for les in s.lesions]

    try:
        import radiomics
        from radiomics import featureextractor, shape
    except ImportError as e:  # pragma: no cover - depends on the environment
        print(f"radmesh measure(): {t_radmesh:.3f} s for {len(ours)} lesions; pyradiomics not importable ({e})")
        return 1
    radiomics.setVerbosity(40)
    per_lesion, info = lesion_label_map(labels)
    ct_img, lesion_img = to_image(ct.array, g), to_image(per_lesion, g)
    extractor = featureextractor.RadiomicsFeatureExtractor(additionalInfo=False)
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("shape")

    rows = []
    t_extractor = t_kernel = 0.0
    for lid, c, centroid in info:
        best, feats = float("inf"), None
        for _ in range(args.radiomics_repeat):
            t = time.perf_counter()
            feats = extractor.execute(ct_img, lesion_img, label=lid)
            best = min(best, time.perf_counter() - t)
        t_extractor += best
        # kernel only, on a crop made beforehand
        sl = ndimage.find_objects((per_lesion == lid).astype(np.uint8))[0]
        crop = (per_lesion[sl] == lid).astype(np.uint8)
        offset = [d.start for d in sl]
        m_img, i_img = to_image(crop, g, offset), to_image(ct.array[sl], g, offset)
        t = time.perf_counter()
        k = shape.RadiomicsShape(i_img, m_img, label=1)
        k.enableAllFeatures()
        k.execute()
        t_kernel += time.perf_counter() - t
        mine = min((les for cc, les in ours if cc == c),
                   key=lambda les: float(np.linalg.norm(les.centroid_mm - centroid)))
        rows.append((V.get(c).name, mine.id, mine.volume_ml, float(feats["original_shape_VoxelVolume"]) / 1000,
                     mine.max_diameter_mm, float(feats["original_shape_Maximum3DDiameter"]),
                     mine.long_axis_mm, mine.short_axis_mm, best))

    print()
    head = (f"{'lesion':<18}{'id':>3}{'vol ml':>9}{'pyr ml':>9}{'maxD mm':>9}{'pyr maxD':>10}{'diff':>7}"
            f"{'long':>7}{'short':>7}{'pyr s':>8}")
    print(head)
    print("-" * len(head))
    for name, lid, v, pv, d, pd, lo, sh, sec in rows:
        print(f"{name:<18}{lid:>3}{v:>9.2f}{pv:>9.2f}{d:>9.1f}{pd:>10.1f}{pd - d:>7.2f}{lo:>7.1f}{sh:>7.1f}{sec:>8.2f}")
    print()
    n = len(rows)
    print(f"radmesh measure(), all {len(result.structures)} classes, {len(ours)} lesions (best of {args.repeat}): "
          f"{t_radmesh:8.3f} s")
    print(f"pyradiomics featureextractor, shape only, {n} lesions (sum):           {t_extractor:8.3f} s")
    print(f"pyradiomics RadiomicsShape kernel on pre-cropped masks (sum):        {t_kernel:8.3f} s")
    print(f"speed-up vs featureextractor: {t_extractor / t_radmesh:6.1f}×   (target ≥ 20×)")
    print(f"speed-up vs pre-cropped kernel only: {t_kernel / t_radmesh:6.1f}×")
    print("diff = pyradiomics − radmesh max 3D diameter: mesh vertices on voxel boundaries vs voxel centres "
          "(expected 0 … 1 voxel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
