#!/usr/bin/env python
"""Benchmark the text service: Parse accuracy and latency, Encode throughput.

- Parse accuracy per field on every labelled prompt set in tests/data/;
- Parse latency p50/p95 (ms) over all labelled prompts, in-process and through a
  real `radmesh serve text` on loopback (gRPC round trip included), the MiniLM
  encoder already loaded (what a running service sees);
- Encode throughput (texts/s) per backend, batches of 64 short class-like texts:
  minilm, clip (a randomly initialised ViT-B/32 text tower from a file: same
  compute as the real weights), table (lookup);
  with, as an in-process peer, sentence-transformers' own ``encode`` of the same
  MiniLM model in the same run.

    python bench/bench_text.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT / "tests"))


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    a = np.asarray(samples) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throughput(fn, texts: list[str], repeat: int) -> float:
    fn(texts[:8])  # warm
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    import torch
    from radmesh.common import vocabulary as V
    from radmesh.common.grpcclient import wait_serving
    from radmesh.text.client import parse_remote
    from radmesh.text.encoders import get_encoder
    from radmesh.text.evaluate import evaluate, load_prompts
    from radmesh.text.parse import Parser

    parser = Parser()
    parser.class_bank()
    sets = sorted(DATA.glob("prompts*.jsonl"))
    all_prompts = []
    print("Parse accuracy")
    for path in sets:
        rows = load_prompts(path)
        all_prompts += [r["prompt"] for r in rows]
        ev = evaluate(rows, parser)
        print(f"\n{path.name} ({len(rows)} prompts)\n{ev.table()}")

    lat = []
    for prompt in all_prompts:
        t = time.perf_counter()
        parser.parse(prompt)
        lat.append(time.perf_counter() - t)
    p50, p95 = percentiles_ms(lat)
    print(f"\nParse latency in-process, {len(lat)} prompts: p50 {p50:.2f} ms, p95 {p95:.2f} ms")

    port, mport = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "radmesh.cli", "serve", "text", "--port", str(port),
                             "--metrics-port", str(mport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        target = f"127.0.0.1:{port}"
        wait_serving(target, 120)
        parse_remote(target, "warm up the liver")
        lat = []
        for prompt in all_prompts:
            t = time.perf_counter()
            parse_remote(target, prompt)
            lat.append(time.perf_counter() - t)
        p50, p95 = percentiles_ms(lat)
        print(f"Parse latency over gRPC (new channel per call), {len(lat)} prompts: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    finally:
        proc.terminate()
        proc.wait(30)

    texts = [f"A computerized tomography of a {c.name}" for c in V.CLASSES] * 2  # 64
    print("\nEncode throughput, batch of 64 class prompts (best of", args.repeat, ")")
    minilm = get_encoder("minilm")
    print(f"  minilm (radmesh, transformers):         {throughput(minilm.encode, texts, args.repeat):8.0f} texts/s")
    try:
        from sentence_transformers import SentenceTransformer

        from radmesh.text.encoders import minilm_dir

        st = SentenceTransformer(str(minilm_dir()), device="cpu")
        rate = throughput(lambda t: st.encode(t, batch_size=64, normalize_embeddings=True), texts, args.repeat)
        print(f"  minilm (sentence-transformers, peer):   {rate:8.0f} texts/s")
    except Exception as e:  # noqa: BLE001 - the peer is optional
        print(f"  sentence-transformers peer unavailable: {e}")
    import open_clip

    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        path = Path(d) / "clip.pt"
        torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), path)
        clip = get_encoder("clip", clip_weights=str(path))
        print(f"  clip ViT-B/32 text tower (random):      {throughput(clip.encode, texts, args.repeat):8.0f} texts/s")
        table_path = Path(d) / "table.pth"
        torch.save(torch.randn(32, 512).half(), table_path)
        table = get_encoder("table", table=str(table_path))
        ids = list(range(1, 33)) * 2
        rate = throughput(lambda _: table.encode_classes(ids), texts, args.repeat)
        print(f"  table lookup:                           {rate:8.0f} classes/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
