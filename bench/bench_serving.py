#!/usr/bin/env python
"""Benchmark: the served segmentation path (client → segmentation service → Triton) against
the in-process pipeline, on one phantom, in one run.

Starts real processes on loopback ports: the text service, ``tritonserver`` (the
``universal_seg`` CPU model: Python backend + ONNX Runtime, :class:`radmesh.triton.launcher.TritonProcess`)
and ``radmesh serve segmentation`` pointed at both (Triton system shared memory: on, as
Triton is on loopback). Weights: the shipped reference weights. Request: ``--classes``
(default liver and pancreas tumour, K = 2), 1.5 mm (``--fast``: 3 mm), overlap 0.5.

CT: a phantom abdomen (seed ``--seed``), ``--size``² × ``--slices`` at ``--spacing-mm``
(default 192² × 80 at 1.5 × 1.5 × 2.5 mm: 288 × 288 × 200 mm, int16, 5.6 MiB).

Measured:

1. end to end, served vs in-process: :func:`radmesh.segmentation.client.segment_remote`
   (upload, Parse/Encode cached after warm-up, windows on Triton, label map back) vs
   :func:`radmesh.model.pipeline.segment` with an in-process
   :class:`~radmesh.model.onnx_runner.OnnxRunner` (session made before timing), both from
   a CT in memory to a label map on its grid, alternated ``--repeat`` times after one
   warm-up each; medians and their ratio (target ≤ 1.15), and the label maps must be equal;
2. volume upload on loopback: a ``--upload-mib`` int16 CT streamed to the service in
   ≈1 MiB chunks until the service has it assembled and its SHA-256 verified (its
   RECEIVING done event), then cancelled. The cancelled request still resamples the CT
   before the service notices (preprocessing is not interruptible; it stops at the
   first window), so each timed upload waits until the service process's CPU time has
   stopped growing — otherwise an upload races the previous one's resampling for the
   two cores. MB/s = 10⁶ bytes per second, with messages encoded before timing (transfer + server) and including the
   client's encoding and hashing (target ≥ 500 MB/s);
3. window traffic, Triton system shared memory vs tensors inside gRPC messages:
   :class:`~radmesh.segmentation.triton_runner.TritonRunner` calls of 2 windows with K = 2
   and K = 16 classes (logits 13.5 MiB and 108 MiB per call), alternated, medians, ratio;
4. throughput with 1, 2 and 4 concurrent clients (``--clients``), each sending the
   phantom once: requests per minute and mean latency.

On a 2-core machine every path competes for the same two cores, so concurrency cannot
add throughput beyond what Triton's dynamic batching saves. Writes nothing outside a
temporary folder.

    python bench/bench_serving.py                       # the recorded run (about 10 minutes on 2 cores)
    python bench/bench_serving.py --size 96 --slices 40 --spacing-mm 4,4,5 --fast --repeat 1 \\
        --clients 1,2 --upload-mib 32 --window-calls 1   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.common.grpcclient import wait_serving
from radmesh.common.volume import Geometry, Volume


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(name: str, logs: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(logs / f"{name}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "radmesh.cli", "serve", name, "--host", "127.0.0.1", "--port",
                             str(port), "--metrics-port", "0", *extra], stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    try:
        wait_serving(target, timeout_s=120)
    except Exception:
        proc.kill()
        raise SystemExit(f"{name} did not start:\n{(logs / f'{name}.log').read_text(errors='replace')}")
    return proc, target


def median_time(fn, n: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, window_s: float = 0.5, busy_fraction: float = 0.05, timeout_s: float = 300.0) -> None:
    """Return once process ``pid`` used under ``busy_fraction`` of a core over ``window_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        before = cpu_seconds(pid)
        time.sleep(window_s)
        if cpu_seconds(pid) - before < busy_fraction * window_s:
            return
    raise SystemExit(f"process {pid} did not go idle within {timeout_s:.0f} s")


def bench_upload(target: str, mib: int, repeat: int, service_pid: int) -> tuple[float, float]:
    """(MB/s with pre-encoded messages, MB/s including client encoding) for a ``mib`` MiB int16 CT."""
    from radmesh.segmentation.client import segment_requests
    from radmesh.v1 import common_pb2, segmentation_pb2_grpc

    slices = max(1, (mib << 20) // (512 * 512 * 2))
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-1000, 1500, size=(slices, 512, 512), dtype=np.int16),
                Geometry((slices, 512, 512), (0.7, 0.7, 1.0)))
    nbytes = ct.array.nbytes

    def upload(requests) -> float:
        wait_idle(service_pid)
        with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20),
                                                    ("grpc.max_send_message_length", 64 << 20)]) as ch:
            t0 = time.perf_counter()
            call = segmentation_pb2_grpc.SegmentationServiceStub(ch).Segment(requests, timeout=300)
            for event in call:
                p = event.progress if event.WhichOneof("event") == "progress" else None
                if p is not None and p.stage == common_pb2.STAGE_RECEIVING and p.total and p.done == p.total:
                    dt = time.perf_counter() - t0
                    call.cancel()  # the upload is what is measured: no segmentation
                    return dt
        raise SystemExit("the service never confirmed the upload")

    pre, full = [], []
    for _ in range(repeat):
        messages = list(segment_requests(ct, classes=[vocab.LIVER]))
        pre.append(upload(iter(messages)))
        del messages
        full.append(upload(segment_requests(ct, classes=[vocab.LIVER])))
    print(f"upload: {nbytes / 1e6:.0f} MB int16 CT, {len(range(0, nbytes, 1 << 20))} chunks; "
          f"pre-encoded {['%.3f' % t for t in pre]} s, with client encoding {['%.3f' % t for t in full]} s")
    return nbytes / 1e6 / min(pre), nbytes / 1e6 / min(full)


def _server_ns(client, model: str) -> int:
    """Nanoseconds Triton spent on the model's requests so far: queue + input + inference + output."""
    st = client.get_inference_statistics(model).model_stats[0].inference_stats
    return st.queue.ns + st.compute_input.ns + st.compute_infer.ns + st.compute_output.ns


def bench_windows(url: str, table_rows: dict[int, np.ndarray], calls: int) -> dict[int, dict[str, float]]:
    """Per K: medians over 2-window calls of the call's wall time and of its traffic time
    (wall − Triton's own queue/input/inference/output time for that call), per transport."""
    import tritonclient.grpc as tgrpc

    from radmesh.segmentation.triton_runner import TritonRunner

    rng = np.random.default_rng(1)
    windows = rng.random((2, 1, 96, 96, 96), dtype=np.float32)
    rows = np.stack(list(table_rows.values()))
    out = {}
    stats = tgrpc.InferenceServerClient(url)
    with TritonRunner(url, shared_memory=True, timeout_s=600) as shm, \
            TritonRunner(url, shared_memory=False, timeout_s=600) as plain:
        for k in (2, 16):
            table = rows[np.arange(k) % len(rows)]
            shm(windows, table), plain(windows, table)  # warm-up: regions registered, batcher primed
            times: dict[str, list[float]] = {"shm": [], "grpc": [], "shm_traffic": [], "grpc_traffic": []}
            for _ in range(calls):
                for name, runner in (("shm", shm), ("grpc", plain)):
                    before = _server_ns(stats, runner.model)
                    t0 = time.perf_counter()
                    runner(windows, table)
                    wall = time.perf_counter() - t0
                    server_s = (_server_ns(stats, runner.model) - before) / 1e9
                    times[name].append(wall)
                    times[f"{name}_traffic"].append(wall - server_s)
            out[k] = {name: statistics.median(v) for name, v in times.items()}
    stats.close()
    return out


def bench_clients(target: str, ct: Volume, classes: list[int], fast: bool, levels: list[int]) -> dict:
    from radmesh.segmentation.client import segment_remote

    out = {}
    for n in levels:
        latencies: list[float] = []
        errors: list[BaseException] = []

        def one() -> None:
            t0 = time.perf_counter()
            try:
                segment_remote(target, ct, classes=classes, fast=fast, timeout_s=3600)
            except BaseException as ex:  # noqa: BLE001 - reported below
                errors.append(ex)
            latencies.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=one) for _ in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if errors:
            raise SystemExit(f"{n} clients: {errors[0]}")
        out[n] = (n / wall * 60.0, statistics.mean(latencies), wall)
        print(f"{n} client(s): {n} requests in {wall:.1f} s → {out[n][0]:.2f} requests/min, "
              f"mean latency {out[n][1]:.1f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=192, help="in-plane matrix (default 192)")
    p.add_argument("--slices", type=int, default=80, help="axial slices (default 80)")
    p.add_argument("--spacing-mm", default="1.5,1.5,2.5", help="x,y,z voxel size in mm (default 1.5,1.5,2.5)")
    p.add_argument("--seed", type=int, default=5, help="phantom seed (default 5)")
    p.add_argument("--classes", default="6,28", help="class indices (default 6,28: liver, pancreas tumour)")
    p.add_argument("--fast", action="store_true", help="3 mm model spacing instead of 1.5 mm")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each path (default 3)")
    p.add_argument("--upload-mib", type=int, default=160, help="size of the upload-test CT, MiB (default 160)")
    p.add_argument("--window-calls", type=int, default=5, help="timed runner calls per transport (default 5)")
    p.add_argument("--clients", default="1,2,4", help="concurrency levels (default 1,2,4)")
    p.add_argument("--triton-threads", type=int, default=None, help="ONNX Runtime threads in Triton (default: cores)")
    p.add_argument("--parts", default="e2e,upload,windows,clients",
                   help="what to measure, comma-separated (default: e2e,upload,windows,clients)")
    args = p.parse_args(argv)

    from radmesh.model.onnx_runner import OnnxRunner
    from radmesh.model.pipeline import class_table_from_meta, segment
    from radmesh.model.preprocess import FAST_SPACING_MM, MODEL_SPACING_MM
    from radmesh.model.runtime import load, onnx_for
    from radmesh.phantom.generator import PhantomConfig, generate
    from radmesh.segmentation.client import segment_remote
    from radmesh.triton.launcher import TritonProcess

    spacing = tuple(float(v) for v in args.spacing_mm.split(","))
    classes = [vocab.get(int(c)).index for c in args.classes.split(",")]
    levels = [int(n) for n in args.clients.split(",") if n]
    ct = generate(args.seed, PhantomConfig(in_plane_size=args.size, spacing_xyz_mm=spacing, slices=args.slices,
                                           oblique=False)).ct
    _, meta = load()
    table = class_table_from_meta(meta)
    onnx_path, _ = onnx_for()
    runner = OnnxRunner(onnx_path)
    model_spacing = FAST_SPACING_MM if args.fast else MODEL_SPACING_MM
    print(f"CT {args.size}×{args.size}×{args.slices} at {args.spacing_mm} mm ({ct.array.nbytes / 2**20:.1f} MiB "
          f"{ct.array.dtype}); classes {', '.join(vocab.get(c).name for c in classes)}; model spacing "
          f"{model_spacing} mm; {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        logs = Path(tmp)
        procs = []
        triton = TritonProcess(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                               threads=args.triton_threads, log_path=logs / "triton.log")
        triton.start()
        try:
            text, text_target = start_service("text", logs)
            procs.append(text)
            seg, target = start_service("segmentation", logs, "--triton-url", triton.grpc_url,
                                        "--text-url", text_target)
            procs.append(seg)

            def in_process():
                return segment(ct, classes, runner, table, spacing_mm=model_spacing,
                               validated_classes=meta["classes"], calibration=meta["calibration"]).labels

            def served():
                return segment_remote(target, ct, classes=classes, fast=args.fast, timeout_s=3600)[0]

            parts = set(args.parts.split(","))
            # warm-up: ONNX Runtime arenas, Parse/Encode and the class-table check, shm registration
            local_labels, served_labels = in_process(), served()
            same = bool(np.array_equal(local_labels.array, served_labels.array))
            t_local, t_served = [], []
            for _ in range(args.repeat if "e2e" in parts else 0):
                t_local.append(median_time(in_process, 1)[0])
                t_served.append(median_time(served, 1)[0])
            print(f"label maps equal (served vs in-process): {same}")
            if t_local:
                ml, ms = statistics.median(t_local), statistics.median(t_served)
                print(f"in-process: {['%.2f' % t for t in t_local]} s; served: {['%.2f' % t for t in t_served]} s")
                print(f"served / in-process: {ms / ml:.3f} (median {ms:.2f} s vs {ml:.2f} s; target ≤ 1.15)")

            if "upload" in parts:
                up_pre, up_full = bench_upload(target, args.upload_mib, max(1, args.repeat), seg.pid)
                print(f"upload on loopback: {up_pre:.0f} MB/s (pre-encoded), {up_full:.0f} MB/s with client "
                      f"encoding (target ≥ 500 MB/s)")

            rows = {c: table[c] for c in meta["classes"]}
            for k, t in (bench_windows(triton.grpc_url, rows, args.window_calls) if "windows" in parts else {}).items():
                print(f"window traffic, 2 windows × K={k} ({2 * k * 96 ** 3 * 4 / 2**20:.1f} MiB of logits): "
                      f"per call shared memory {t['shm']:.3f} s, gRPC {t['grpc']:.3f} s (ratio "
                      f"{t['shm'] / t['grpc']:.3f}); traffic alone (call − Triton's time) shared memory "
                      f"{t['shm_traffic'] * 1e3:.0f} ms, gRPC {t['grpc_traffic'] * 1e3:.0f} ms (ratio "
                      f"{t['shm_traffic'] / t['grpc_traffic']:.3f})")

            if "clients" in parts:
                bench_clients(target, ct, classes, args.fast, levels)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
