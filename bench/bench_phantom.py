#!/usr/bin/env python
"""Benchmark: the phantom generator, v2 (all 32 classes, pelvis, bone, phases, metal) against v1 in the
same run, on the size the issue names (512² × 300 slices).

Both versions draw the same seeds at the same grid, lesions as each draws them; v2 is asked
for its largest region (abdomen–pelvis, so nearly every structure is painted). Prints the
median wall time of each and the ratio v2 / v1.

    python bench/bench_phantom.py [--repeat 3] [--size 512] [--slices 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

from radmesh.phantom.generator import PhantomConfig, generate


def timed(seed: int, cfg: PhantomConfig) -> float:
    t = time.perf_counter()
    generate(seed, cfg)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    a = ap.parse_args(argv)
    v1 = PhantomConfig(in_plane_size=a.size, slices=a.slices)
    v2 = PhantomConfig(in_plane_size=a.size, slices=a.slices, version=2, region="abdomen-pelvis")
    seeds = [20 + i for i in range(a.repeat)]
    timed(seeds[0], PhantomConfig(in_plane_size=64, slices=8))  # imports and thread pool warm-up
    t1 = [timed(s, v1) for s in seeds]
    t2 = [timed(s, v2) for s in seeds]
    m1, m2 = statistics.median(t1), statistics.median(t2)
    print(f"phantom {a.size}² × {a.slices}, median of {a.repeat}")
    print(f"  v1 (16 classes)                 {m1:6.2f} s   ({', '.join(f'{t:.2f}' for t in t1)})")
    print(f"  v2 (32 classes, abdomen–pelvis) {m2:6.2f} s   ({', '.join(f'{t:.2f}' for t in t2)})")
    print(f"  v2 / v1                         {m2 / m1:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
