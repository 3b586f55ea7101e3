#!/usr/bin/env python
"""Benchmark: the Universal Model through Triton (CPU model ``universal_seg``) vs ONNX Runtime in-process.

Same ONNX graph (the shipped weights' cached export), same thread count, same inputs:

- in-process: :class:`radmesh.model.onnx_runner.OnnxRunner` ``(windows (B,1,96³), table (K,E))``;
- Triton gRPC: ``tritonclient.grpc`` infer on a real tritonserver
  (:class:`radmesh.triton.launcher.TritonProcess`, loopback), tensors in the messages;
- Triton shm: the same with the image, table and logits in system shared memory regions.

Per B in ``--batches`` (default 1 and 4) with K = ``--k`` (16): one warm-up call per path,
then ``--repeat`` rounds of one timed call per path, interleaved (so load from other
processes drifts over all paths alike); the median call time divided by B is the
per-window latency, and the ratio Triton / in-process is what serving through Triton
costs. Also prints the start-to-ready time of Triton: ``radmesh serve triton`` as a
fresh process until its ready line (imports, weights, runtime repository, server), and
the server alone (process start → server live, ready, model ready). Each logits array
is checked against the in-process one (max |Δ| printed).

    python bench/bench_triton.py [--k 16] [--batches 1,4] [--repeat 3] [--threads N] [--no-shm]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

W = 96


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=16, help="classes per request (default 16)")
    ap.add_argument("--batches", default="1,4", help="windows per request, comma-separated (default 1,4)")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per case (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads, both paths (default: per core)")
    ap.add_argument("--no-shm", action="store_true", help="skip the shared-memory variant")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.k < 1 or args.repeat < 1 or any(not 1 <= b <= 8 for b in batches):
        ap.error("need --k ≥ 1, --repeat ≥ 1 and batches in 1..8 (the model's max_batch_size)")

    import tritonclient.grpc as grpcclient

    from radmesh.model.onnx_runner import OnnxRunner
    from radmesh.model.runtime import onnx_for
    from radmesh.triton.launcher import CPU_MODEL, TritonProcess, prepare_repository

    onnx_path, _ = onnx_for()                  # export once, outside every timing
    runner = OnnxRunner(onnx_path, threads=args.threads)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((args.k, runner.embed_dim)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)

    with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp:
        cli_s = _serve_cli_ready_s(Path(tmp))
        repo = prepare_repository(Path(tmp) / "repo", threads=args.threads)
        g, h, m = _three_ports()
        triton = TritonProcess(repo, grpc_port=g, http_port=h, metrics_port=m, log_path=Path(tmp) / "triton.log")
        t0 = time.perf_counter()
        triton.start()
        start_s = time.perf_counter() - t0
        print(f"Triton start-to-ready: `radmesh serve triton` {cli_s:.2f} s to its ready line; "
              f"the server alone {start_s:.2f} s")
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            print(f"K = {args.k}, threads = {args.threads or 'per core'}, {args.repeat} interleaved round(s); "
                  f"per-window latency = median call / B")
            print(f"{'B':>2} {'in-process s/win':>17} {'Triton gRPC s/win':>18} {'ratio':>6}"
                  + ("" if args.no_shm else f" {'Triton shm s/win':>17} {'ratio':>6}") + "  max |Δ|")
            for b in batches:
                image = rng.random((b, 1, W, W, W), dtype=np.float32)
                tables = np.ascontiguousarray(np.repeat(table[None], b, axis=0))
                paths = {"local": lambda: runner(image, table),
                         "grpc": lambda: _infer(client, CPU_MODEL, image, tables)}
                shm_call = None if args.no_shm else _ShmCall(client, image, tables, args.k).__enter__()
                if shm_call is not None:
                    paths["shm"] = shm_call
                try:
                    outs, times = _time_interleaved(paths, args.repeat)
                finally:
                    if shm_call is not None:
                        shm_call.__exit__()
                diff = max(float(np.abs(outs[p] - outs["local"]).max()) for p in paths)
                t_local = times["local"]
                line = f"{b:>2} {t_local / b:>17.3f} {times['grpc'] / b:>18.3f} {times['grpc'] / t_local:>6.2f}"
                if shm_call is not None:
                    line += f" {times['shm'] / b:>17.3f} {times['shm'] / t_local:>6.2f}"
                print(line + f"  {diff:.1e}", flush=True)
        finally:
            client.close()
            triton.stop()
    return 0


def _three_ports() -> tuple[int, int, int]:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    g, h, m = sorted(ports)
    return g, h, m


def _serve_cli_ready_s(tmp: Path) -> float:
    """Seconds from starting ``radmesh serve triton`` (a fresh interpreter) to its ready line; then SIGTERM."""
    import signal
    import subprocess

    g, h, m = _three_ports()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "radmesh.cli", "serve", "triton", "--grpc-port", str(g),
                             "--http-port", str(h), "--metrics-port", str(m)], cwd=tmp, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        ready_s = time.perf_counter() - t0
        if not line.startswith("triton ready"):
            raise SystemExit(f"radmesh serve triton did not become ready (exit {proc.poll()})")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return ready_s


def _time_interleaved(paths: dict, repeat: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    outs = {name: fn() for name, fn in paths.items()}   # warm-up (first-call allocations, Triton's first batch)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeat):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return outs, {name: statistics.median(t) for name, t in times.items()}


def _infer(client, model: str, image: np.ndarray, tables: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    inputs = []
    for name, arr in (("image", image), ("class_embedding", tables)):
        t = grpcclient.InferInput(name, list(arr.shape), "FP32")
        t.set_data_from_numpy(arr)
        inputs.append(t)
    return client.infer(model, inputs).as_numpy("logits")


class _ShmCall:
    """Inputs and outputs in system shared memory regions registered with Triton (created once)."""

    def __init__(self, client, image: np.ndarray, tables: np.ndarray, k: int):
        self.client, self.image, self.tables = client, image, tables
        self.shape = [image.shape[0], k, W, W, W]
        self.sizes = {"image": image.nbytes, "class_embedding": tables.nbytes,
                      "logits": int(np.prod(self.shape)) * 4}
        self.tag = uuid.uuid4().hex[:8]
        self.regions = {}

    def __enter__(self):
        import tritonclient.utils.shared_memory as shm

        for name, size in self.sizes.items():
            self.regions[name] = shm.create_shared_memory_region(f"{self.tag}_{name}", f"/bench_{self.tag}_{name}",
                                                                 size)
            self.client.register_system_shared_memory(f"{self.tag}_{name}", f"/bench_{self.tag}_{name}", size)
        return self

    def __call__(self) -> np.ndarray:
        import tritonclient.grpc as grpcclient
        import tritonclient.utils.shared_memory as shm

        shm.set_shared_memory_region(self.regions["image"], [self.image])
        shm.set_shared_memory_region(self.regions["class_embedding"], [self.tables])
        inputs = []
        for name, arr in (("image", self.image), ("class_embedding", self.tables)):
            t = grpcclient.InferInput(name, list(arr.shape), "FP32")
            t.set_shared_memory(f"{self.tag}_{name}", self.sizes[name])
            inputs.append(t)
        out = grpcclient.InferRequestedOutput("logits")
        out.set_shared_memory(f"{self.tag}_logits", self.sizes["logits"])
        self.client.infer("universal_seg", inputs, outputs=[out])
        # a copy, as a client keeps the logits after it reuses the region
        return np.array(shm.get_contents_as_numpy(self.regions["logits"], np.float32, self.shape))

    def __exit__(self, *exc) -> None:
        import tritonclient.utils.shared_memory as shm

        for name, region in self.regions.items():
            self.client.unregister_system_shared_memory(f"{self.tag}_{name}")
            shm.destroy_shared_memory_region(region)


if __name__ == "__main__":
    sys.exit(main())
