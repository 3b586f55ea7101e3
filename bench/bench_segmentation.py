#!/usr/bin/env python
"""Benchmark: the radmesh segmentation pipeline against the usual MONAI + PyTorch way, same weights, same CT.

Weights: the shipped ``model_weights/radmesh_unet_phantom.pt`` if it exists (or
``--weights``), else a seeded random ``unet_compact`` model (the script says which).
Classes: all 32 (``--classes`` to change); one class table for both paths — the
weights' own rows for the classes it was validated on, MiniLM embeddings of the
others (all 32 from MiniLM for the random model).

CT: a phantom abdomen (``radmesh.phantom``, seed ``--seed``) on a ``size × size ×
slices`` grid, ``--fov-mm`` field of view and ``--thickness-mm`` slices (default
256² × 100 at 1.5625 × 1.5625 × 2.5 mm: 400 × 400 × 250 mm, axis-aligned, with
kidney, liver, pancreas and lung lesions), written to a temporary NIfTI that both
paths read. Both are timed from reading that file to a label map on its grid.

- radmesh: ``read_volume`` → :func:`radmesh.model.pipeline.segment` with the model
  exported to ONNX (:func:`radmesh.model.export.export_onnx`, not timed) and run by
  ONNX Runtime (:class:`~radmesh.model.onnx_runner.OnnxRunner`), body crop,
  ``--sw-batch-size`` windows per call (default 2), overlap 0.5, Gaussian blending.
- reference: MONAI dict transforms ``LoadImaged`` → ``EnsureChannelFirstd`` →
  ``Orientationd("LPS")`` → ``Spacingd(1.5 mm, bilinear, scale_extent=True)`` →
  ``ScaleIntensityRanged(-175, 250 → 0, 1, clip)``; ``monai.inferers.sliding_window_inference``
  (roi 96³, overlap 0.5, ``mode="gaussian"``, ``sw_batch_size=1``) over the whole
  volume with the PyTorch model in eager mode (windows transposed to the model's
  (z, y, x) convention); sigmoid; back to the CT's grid with ``Invertd``
  (nearest). Both paths turn probabilities into labels with the same
  :func:`radmesh.model.postprocess.postprocess` and the weights' calibration
  (:mod:`radmesh.model.calibration`), so the Dice compares inference paths.

radmesh runs twice: as shipped (body crop), and with ``crop_to_body=False``, whose
96³ windows are exactly the reference's (``--crop-only`` skips that run). The two
tilings differ, and the Universal Model's output depends on the tiling: every
window's heads are conditioned on that window's pooled image feature. How much depends
on the model; the shipped phantom model (see docs/model_card.md) is very sensitive to
it, so the uncropped run is the like-for-like comparison, and the Dice of each label
map against the phantom's own truth is printed too (classes present in the phantom).

Prints wall and CPU times, the speed ratios (target ≥ 2×), per-class Dice between the
label maps (target ≥ 0.99; classes under 0.5 ml in both maps are listed, not scored),
and the achieved GFLOP/s of the backbone (FLOPs of
one 96³ window counted with ``torch.utils.flop_counter``) in PyTorch and ONNX Runtime
against a 4096² float32 matmul measured in the same run. Writes nothing outside a
temporary folder.

    python bench/bench_segmentation.py [--size 256] [--slices 100] [--threads 2] [--crop-only]
    python bench/bench_segmentation.py --size 64 --slices 24 --fov-mm 220 --thickness-mm 5 \
        --classes 1,2,3,6 --repeat 1          # a smoke run, about a minute
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from radmesh.common import vocabulary as V
from radmesh.common.imageio import read_volume, write_volume
from radmesh.model.network import build_model
from radmesh.model.calibration import UNCALIBRATED, Calibration
from radmesh.model.postprocess import postprocess
from radmesh.model.preprocess import HU_WINDOW, MODEL_SPACING_MM, body_mask
from radmesh.phantom.generator import PhantomConfig, generate

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = ROOT / "model_weights" / "radmesh_unet_phantom.pt"
MIN_DICE_ML = 0.5    # a class this small in both label maps is a speck: its Dice is listed, not scored
LESIONS = (V.KIDNEY_TUMOR, V.LIVER_TUMOR, V.LIVER_TUMOR, V.PANCREAS_TUMOR, V.LUNG_TUMOR, V.KIDNEY_CYST)


def load_model(weights: Path | None, seed: int) -> tuple[torch.nn.Module, dict[int, np.ndarray], str, float,
                                                         tuple[int, ...], Calibration]:
    """(model, class table for all 32 classes, description, spacing_mm, classes the weights are validated
    on (none for the random model), the weights' post-processing calibration)."""
    from radmesh.text.encoders import get_encoder

    minilm = get_encoder("minilm").encode_classes([c.index for c in V.CLASSES])
    table = {c.index: minilm[c.index - 1] for c in V.CLASSES}
    if weights is not None and weights.is_file():
        from radmesh.model.pipeline import class_table_from_meta
        from radmesh.model.train import load_weights

        model, meta = load_weights(weights)
        own = class_table_from_meta(meta)
        table.update(own)
        what = (f"weights {weights} ({meta.get('model_version')}; validated on {len(own)} classes, "
                f"MiniLM embeddings for the other {V.NUM_CLASSES - len(own)})")
        return (model.eval(), table, what, float(meta.get("spacing_mm", MODEL_SPACING_MM)), tuple(sorted(own)),
                meta["calibration"])
    torch.manual_seed(seed)
    model = build_model("unet_compact", embed_dim=minilm.shape[1]).eval()
    return model, table, f"seeded random unet_compact (torch.manual_seed({seed}); no weights file found)", \
        MODEL_SPACING_MM, (), UNCALIBRATED


def reference_segment(ct_path: Path, model: torch.nn.Module, embedding: np.ndarray, classes: list[int],
                      spacing_mm: float, calibration: Calibration) -> tuple[np.ndarray, int]:
    """The MONAI + PyTorch path → (label map (z, y, x) on the file's grid, windows run)."""
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import (Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd,
                                  ScaleIntensityRanged, Spacingd)

    lo, hi = HU_WINDOW
    pre = Compose([
        LoadImaged(keys="image"),
        EnsureChannelFirstd(keys="image"),
        Orientationd(keys="image", axcodes="LPS"),
        # scale_extent: the grid covering the input's extent, as the model was trained on
        # (radmesh.model.preprocess.canonical_grid: same shape and origin for axis-aligned CTs)
        Spacingd(keys="image", pixdim=(spacing_mm,) * 3, mode="bilinear", scale_extent=True),
        ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
    ])
    data = pre({"image": str(ct_path)})
    image = data["image"]                                              # (1, X, Y, Z), LPS
    emb = torch.from_numpy(embedding)
    windows = 0

    def predictor(w: torch.Tensor) -> torch.Tensor:                    # the model works on (z, y, x)
        nonlocal windows
        windows += w.shape[0]
        return model(w.permute(0, 1, 4, 3, 2), emb).permute(0, 1, 4, 3, 2)

    with torch.inference_mode():
        logits = sliding_window_inference(image.as_tensor()[None], (96, 96, 96), 1, predictor, overlap=0.5,
                                          mode="gaussian")
        probs = torch.sigmoid(logits[0]).permute(0, 3, 2, 1).numpy()   # (K, Z, Y, X)
    windowed = image[0].as_tensor().permute(2, 1, 0).numpy()
    # the body with the air it encloses, as the pipeline's (found on this canonical grid, which
    # for this axis-aligned phantom is the scan's own); the image for the air rules
    labels_zyx = postprocess(probs, classes, spacing_mm, body_mask=body_mask(windowed), image=windowed,
                             **calibration.postprocess_kwargs())
    del probs, logits
    pred = MetaTensor(torch.from_numpy(np.ascontiguousarray(labels_zyx.transpose(2, 1, 0))[None].astype(np.float32)),
                      affine=image.affine, meta=dict(image.meta))
    pred.applied_operations = list(image.applied_operations)
    data["pred"] = pred
    out = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(data)["pred"]
    arr = np.asarray(out[0].detach().cpu().numpy()).transpose(2, 1, 0)  # file (i, j, k) → (z, y, x)
    return np.rint(arr).astype(np.uint8), windows


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    na, nb = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    if na + nb == 0:
        return None
    return 2.0 * np.count_nonzero(a & b) / (na + nb)


def agreement_summary(dices: list[tuple[int, float]]) -> str:
    """Mean and min of (class index, Dice) pairs, and the classes under 0.99, on one line."""
    worst = min(dices, key=lambda x: x[1])
    below = [V.get(cc).name for cc, d in dices if d < 0.99]
    return (f"mean {np.mean([d for _, d in dices]):.4f}, min {worst[1]:.4f} ({V.get(worst[0]).name}); "
            f"below 0.99: {', '.join(below) or 'none'}   (target ≥ 0.99)")


def best_of(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def gflops_report(model: torch.nn.Module, onnx_runner, embed_dim: int, repeat: int) -> list[str]:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 1, 96, 96, 96)
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model.backbone(x)
    backbone_flops = fc.get_total_flops()
    heads_flops_per_class = 96 ** 3 * 2 * (8 * 8 + 8 * 8 + 8)          # 3 layers 8→8→8→1, multiply-adds
    with torch.inference_mode():
        model.backbone(x)
        t_torch = best_of(lambda: model.backbone(x), repeat)
    e1 = np.random.default_rng(0).standard_normal((1, embed_dim)).astype(np.float32)
    onnx_runner(x.numpy(), e1)
    t_ort = best_of(lambda: onnx_runner(x.numpy(), e1), repeat)       # K = 1: the heads add < 1 %
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    torch.mm(a, b)
    t_mm = best_of(lambda: torch.mm(a, b), repeat)
    mm_gflops = 2 * 4096 ** 3 / t_mm / 1e9
    g = backbone_flops / 1e9
    return [
        f"backbone FLOPs per 96³ window: {g:.2f} GFLOP (torch.utils.flop_counter); heads: "
        f"{heads_flops_per_class / 1e9:.3f} GFLOP per class (analytic; {32 * heads_flops_per_class / 1e9:.1f} at K=32)",
        f"float32 matmul 4096² (torch.mm, same threads): {mm_gflops:7.1f} GFLOP/s  (best of {repeat})",
        f"backbone, PyTorch eager:   {t_torch:6.3f} s/window = {g / t_torch:6.1f} GFLOP/s "
        f"({100 * g / t_torch / mm_gflops:4.1f} % of matmul)",
        f"backbone, ONNX Runtime (full graph at K=1): {t_ort:6.3f} s/window = {g / t_ort:6.1f} GFLOP/s "
        f"({100 * g / t_ort / mm_gflops:4.1f} % of matmul)",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256, help="in-plane matrix (default 256)")
    p.add_argument("--slices", type=int, default=100, help="axial slices (default 100)")
    p.add_argument("--fov-mm", type=float, default=400.0, help="in-plane field of view in mm (default 400)")
    p.add_argument("--thickness-mm", type=float, default=2.5, help="slice thickness in mm (default 2.5)")
    p.add_argument("--seed", type=int, default=5, help="phantom seed (default 5)")
    p.add_argument("--classes", default="all", help='comma-separated class indices, or "all" (default)')
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="threads for both paths")
    p.add_argument("--sw-batch-size", type=int, default=2, help="radmesh windows per runner call (default 2)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--repeat", type=int, default=3, help="runs for the GFLOP/s timings (best of)")
    p.add_argument("--skip-reference", action="store_true", help="time radmesh only")
    p.add_argument("--crop-only", action="store_true",
                   help="skip the second radmesh run without the body crop (the reference's window tiling)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", module=r"monai\..*")       # MONAI's deprecation and reader notices
    logging.getLogger("monai").setLevel(logging.ERROR)
    if args.size < 32 or args.slices < 8 or args.threads < 1:
        p.error("need --size ≥ 32, --slices ≥ 8, --threads ≥ 1")
    classes = [c.index for c in V.CLASSES] if args.classes == "all" else \
        [V.get(int(c)).index for c in args.classes.split(",") if c.strip()]

    from radmesh.model.export import export_onnx
    from radmesh.model.onnx_runner import OnnxRunner
    from radmesh.model.pipeline import class_embeddings, segment

    torch.set_num_threads(args.threads)
    model, table, what, spacing, validated, calibration = load_model(args.weights, seed=0)
    embedding = class_embeddings(classes, table)
    print(f"model: {what}; post-processing calibration: {calibration.name or 'none'}")
    print(f"threads: {args.threads}; classes: {len(classes)}; model spacing {spacing} mm")

    with tempfile.TemporaryDirectory(prefix="bench-seg-") as tmp:
        tmp_path = Path(tmp)
        sp = args.fov_mm / args.size
        t = time.perf_counter()
        ph = generate(args.seed, PhantomConfig(in_plane_size=args.size, spacing_xyz_mm=(sp, sp, args.thickness_mm),
                                               slices=args.slices, oblique=False, lesions=LESIONS))
        ct_path = write_volume(ph.ct, tmp_path / "ct.nii.gz")
        g = ph.ct.geometry
        print(f"phantom seed {args.seed}: {g.shape_zyx[2]}×{g.shape_zyx[1]}×{g.shape_zyx[0]} (x×y×z), spacing "
              f"{sp:.4g}×{sp:.4g}×{args.thickness_mm:g} mm ({args.fov_mm:g}×{args.fov_mm:g}×"
              f"{args.slices * args.thickness_mm:g} mm), made in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        exp = export_onnx(model, tmp_path / "universal_seg.onnx", embedding.shape[1])
        print(f"ONNX export + check (not timed below): {time.perf_counter() - t:.1f} s, "
              f"max |Δlogit| vs PyTorch over B∈{{1,2}}, K∈{{1,5}}: {exp.max_abs_diff:.3g}")
        runner = OnnxRunner(exp.path, threads=args.threads)

        # --- radmesh
        t, c = time.perf_counter(), time.process_time()
        ct = read_volume(ct_path)
        res = segment(ct, classes, runner, table, spacing_mm=spacing, overlap=0.5, sw_batch_size=args.sw_batch_size,
                      calibration=calibration)
        ours_wall, ours_cpu = time.perf_counter() - t, time.process_time() - c
        ours = res.labels.array
        tm = res.timings_s
        print(f"\nradmesh (ONNX Runtime, body crop, batch {args.sw_batch_size}): {ours_wall:7.1f} s wall, "
              f"{ours_cpu:7.1f} s CPU; {res.windows} windows ({tm['inference'] / max(1, res.windows):.2f} s/window); "
              f"preprocess {tm['preprocess']:.1f} s, inference {tm['inference']:.1f} s, postprocess "
              f"{tm['postprocess']:.1f} s, resample {tm['resample']:.1f} s")

        uncropped = None
        if not args.crop_only:
            t, c = time.perf_counter(), time.process_time()
            res_u = segment(read_volume(ct_path), classes, runner, table, spacing_mm=spacing, overlap=0.5,
                            calibration=calibration,
                            sw_batch_size=args.sw_batch_size, crop_to_body=False)
            u_wall, u_cpu = time.perf_counter() - t, time.process_time() - c
            uncropped = res_u.labels.array
            print(f"radmesh without the body crop (the reference's tiling): {u_wall:7.1f} s wall, {u_cpu:7.1f} s CPU; "
                  f"{res_u.windows} windows")

        # --- reference
        if not args.skip_reference:
            t, c = time.perf_counter(), time.process_time()
            ref, ref_windows = reference_segment(ct_path, model, embedding, classes, spacing, calibration)
            ref_wall, ref_cpu = time.perf_counter() - t, time.process_time() - c
            print(f"reference (MONAI transforms + sliding_window_inference, PyTorch eager, batch 1): "
                  f"{ref_wall:7.1f} s wall, {ref_cpu:7.1f} s CPU; {ref_windows} windows "
                  f"({ref_wall / max(1, ref_windows):.2f} s/window all included)")
            if ref.shape != ours.shape:
                print(f"label maps differ in shape: {ref.shape} vs {ours.shape}")
                return 1
            print(f"speed-up: {ref_wall / ours_wall:5.2f}× wall, {ref_cpu / ours_cpu:5.2f}× CPU   (target ≥ 2×)")
            if uncropped is not None:
                print(f"speed-up without the body crop: {ref_wall / u_wall:5.2f}× wall, {ref_cpu / u_cpu:5.2f}× CPU")

            voxel_ml = g.voxel_volume_mm3 / 1000
            maps = [("radmesh", ours)] + ([("uncropped", uncropped)] if uncropped is not None else [])
            head = f"\n{'class':<30}{'reference ml':>13}" + "".join(f"{n + ' ml':>15}{'Dice':>8}" for n, _ in maps)
            print(head)
            dices: dict[str, list[tuple[int, float]]] = {n: [] for n, _ in maps}
            for cidx in classes:
                b = ref == cidx
                row = f"{V.get(cidx).name:<30}{np.count_nonzero(b) * voxel_ml:>13.1f}"
                for n, lab in maps:
                    a = lab == cidx
                    d = dice(a, b)
                    if d is not None:
                        dices[n].append((cidx, d))
                    row += f"{np.count_nonzero(a) * voxel_ml:>15.1f}{'—' if d is None else f'{d:.4f}':>8}"
                print(row)
            for n, lab in maps:
                # classes under MIN_DICE_ML in both maps are specks: listed, not scored
                ds = [(cc, d) for cc, d in dices[n]
                      if max(np.count_nonzero(lab == cc), np.count_nonzero(ref == cc)) * voxel_ml >= MIN_DICE_ML]
                specks = [V.get(cc).name for cc, _ in dices[n] if cc not in {c for c, _ in ds}]
                if ds:
                    print(f"{n} vs reference, Dice over the {len(ds)} classes of ≥ {MIN_DICE_ML} ml: "
                          + agreement_summary(ds)
                          + (f"; specks < {MIN_DICE_ML} ml not scored: {', '.join(specks)}" if specks else ""))
                # the other classes' heads get text the weights never saw: their agreement says
                # how stable noise is, not how the two paths serve a class the model knows
                dv = [(cc, d) for cc, d in ds if cc in validated]
                if dv and len(dv) < len(ds):
                    print(f"{n} vs reference, of those the {len(dv)} the weights are validated on: "
                          + agreement_summary(dv))
                print(f"{n} vs reference, voxels with the same label: {100 * float(np.mean(lab == ref)):.3f} %")

            truth = ph.labels.array
            present = [c for c in classes if np.count_nonzero(truth == c) * voxel_ml >= MIN_DICE_ML]
            if present:
                maps_t = [("reference", ref)] + maps
                print(f"\nagainst the phantom's truth ({len(present)} classes present):")
                print(f"{'class':<30}{'truth ml':>10}" + "".join(f"{n:>12}" for n, _ in maps_t))
                means = {n: [] for n, _ in maps_t}
                for cidx in present:
                    t_mask = truth == cidx
                    row = f"{V.get(cidx).name:<30}{np.count_nonzero(t_mask) * voxel_ml:>10.1f}"
                    for n, lab in maps_t:
                        d = dice(lab == cidx, t_mask) or 0.0
                        means[n].append(d)
                        row += f"{d:>12.3f}"
                    print(row)
                print(f"{'mean Dice':<40}" + "".join(f"{np.mean(means[n]):>12.3f}" for n, _ in maps_t))

        print()
        for line in gflops_report(model, runner, embedding.shape[1], args.repeat):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
