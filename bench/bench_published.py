#!/usr/bin/env python
"""Benchmark: one 96³ window of each backbone on this CPU, ONNX Runtime (what radmesh runs) against
PyTorch eager (the peer) in the same run.

Backbones: the shipped ``unet_compact`` weights, and the published Universal Model's U-Net and
Swin UNETR as ``radmesh weights import`` makes them — from randomly initialised checkpoints in
the published key layout (no published file reaches this machine; the arithmetic, and so the
time, is that of the real weights). Each graph is exported and verified against PyTorch first
(the export's time is printed too: a user's first segmentation pays it once).

    python bench/bench_published.py [--repeat 3] [--classes 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def published_weights(backbone: str, seed: int, tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from published_layout import reference_state, write_checkpoint

    from radmesh.model.importer import write_published_weights

    state, embedding = reference_state(backbone, seed)
    checkpoint = write_checkpoint(tmp / f"{backbone}.pth", state, embedding, backbone)
    out = tmp / f"{backbone}.pt"
    write_published_weights(checkpoint, out, backbone)
    checkpoint.unlink()
    return out


def time_window(weights: Path | None, classes: int, repeat: int) -> dict[str, float]:
    from radmesh.model.onnx_runner import OnnxRunner
    from radmesh.model.runtime import load, onnx_for

    model, meta = load(weights)
    t0 = time.perf_counter()
    path, _ = onnx_for(weights)
    export_s = time.perf_counter() - t0
    runner = OnnxRunner(path)
    rng = np.random.default_rng(0)
    x = rng.random((1, 1, 96, 96, 96), dtype=np.float32)
    e = np.ascontiguousarray(meta["class_embedding"][:classes], dtype=np.float32)
    runner(x, e)  # warm-up: ONNX Runtime plans its memory on the first call
    ort_s = []
    for _ in range(repeat):
        t = time.perf_counter()
        runner(x, e)
        ort_s.append(time.perf_counter() - t)
    torch_s = []
    with torch.inference_mode():
        xt, et = torch.from_numpy(x), torch.from_numpy(e)
        model(xt, et)
        for _ in range(repeat):
            t = time.perf_counter()
            model(xt, et)
            torch_s.append(time.perf_counter() - t)
    return {"export_s": export_s, "ort_s": statistics.median(ort_s), "torch_s": statistics.median(torch_s),
            "parameters": float(sum(p.numel() for p in model.parameters()))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--classes", type=int, default=2, help="K, the classes each window is asked for")
    p.add_argument("--only", choices=("compact", "unet", "swinunetr"), action="append",
                   help="time only these backbones (repeatable; default all three)")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(torch.get_num_threads())  # one per core, as ONNX Runtime's default
    which = args.only or ["compact", "unet", "swinunetr"]
    print(f"one 96³ window, K = {args.classes}, median of {args.repeat}; {torch.get_num_threads()} threads")
    print(f"{'backbone':<24} {'parameters':>11} {'export+verify':>14} {'ONNX Runtime':>13} {'PyTorch':>9} "
          f"{'ORT/PyTorch':>12}")
    with tempfile.TemporaryDirectory(prefix="radmesh-bench-published-") as d:
        for name in which:
            weights = None if name == "compact" else published_weights(name, 1, Path(d))
            r = time_window(weights, args.classes, args.repeat)
            label = {"compact": "unet_compact (shipped)", "unet": "published U-Net",
                     "swinunetr": "published Swin UNETR"}[name]
            print(f"{label:<24} {r['parameters'] / 1e6:>9.2f} M {r['export_s']:>12.1f} s {r['ort_s']:>11.2f} s "
                  f"{r['torch_s']:>7.2f} s {r['ort_s'] / r['torch_s']:>12.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
