"""``radmesh serve triton``: a real Triton Inference Server on radmesh's model repository.

    radmesh serve triton                                  # universal_seg on CPU, ports 8001/8000/8002
    radmesh serve triton --models universal_seg_trt --model-repository /models   # a GPU node

Unlike the other services this is not a gRPC ServiceSpec of ours: it runs
``tritonserver`` (:class:`radmesh.triton.launcher.TritonProcess`), waits until the
server and every model are ready, prints one line with the gRPC URL, forwards
Triton's log to our JSON log on stderr, and on SIGINT/SIGTERM stops Triton (which
finishes in-flight requests) and exits 0. Every flag is also ``RADMESH_TRITON_*``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from radmesh.common.errors import InvalidInputError, UnavailableError

log = logging.getLogger("radmesh.triton")

ENV_PREFIX = "RADMESH_TRITON_"


def _env(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def add_parser(serve_sub: argparse._SubParsersAction) -> None:
    """Add ``triton`` to the ``radmesh serve`` subcommands."""
    from radmesh.common.config import add_env_argument
    from radmesh.triton.launcher import CPU_MODEL

    p = serve_sub.add_parser("triton", help="NVIDIA Triton Inference Server with the Universal Model "
                                            "(tritonserver from the nvidia-pytriton wheel)")
    for flag, kw in (
        ("--host", dict(default="127.0.0.1", help="address Triton listens on ('0.0.0.0' in a pod)")),
        ("--grpc-port", dict(type=int, default=8001, help="Triton gRPC port")),
        ("--http-port", dict(type=int, default=8000, help="Triton HTTP port")),
        ("--metrics-port", dict(type=int, default=8002, help="Triton Prometheus metrics port")),
        ("--weights", dict(help="model weights to serve (default: the shipped reference weights)")),
        ("--model-repository", dict(help="serve this prepared repository as it is (default: a runtime copy of "
                                         "model_repository/ made for --weights)")),
        ("--models", dict(default=CPU_MODEL, help="models to load, comma-separated (universal_seg_trt needs a "
                                                  "GPU, its plan and a Triton with the TensorRT backend)")),
        ("--threads", dict(type=int, help="ONNX Runtime threads of the CPU model (default: one per core)")),
        ("--start-timeout-s", dict(type=float, default=180.0, help="how long to wait for readiness, s")),
        ("--log-level", dict(default="INFO", help="DEBUG, INFO, WARNING or ERROR")),
    ):
        add_env_argument(p, flag, env=_env(flag), **kw)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from radmesh.common.jsonlog import setup_logging
    from radmesh.triton.launcher import TritonProcess

    level = str(args.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise InvalidInputError(f"--log-level {args.log_level} is not DEBUG, INFO, WARNING or ERROR")
    if args.start_timeout_s <= 0:
        raise InvalidInputError(f"--start-timeout-s must be positive, got {args.start_timeout_s}")
    models = tuple(m.strip() for m in str(args.models).split(",") if m.strip())
    setup_logging(level)
    triton = TritonProcess(Path(args.model_repository) if args.model_repository else None,
                           grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
                           weights=args.weights, models=models, threads=args.threads, host=args.host)
    stop, ready = threading.Event(), threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()
        if triton.running and not ready.is_set():
            os.kill(triton.pid, signal.SIGTERM)      # interrupts start(): it sees Triton exit

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            triton.start(timeout_s=args.start_timeout_s)
        except UnavailableError:
            if stop.is_set():
                log.info("stopped before Triton was ready")
                return 0
            raise
        ready.set()
        print(f"triton ready at {triton.grpc_url} (gRPC; HTTP :{args.http_port}, metrics :{args.metrics_port}; "
              f"models {','.join(models)}; pid {triton.pid})", flush=True)
        while not stop.wait(0.5):
            if not triton.running:
                raise UnavailableError(f"tritonserver exited unexpectedly with code {triton.returncode}; "
                                       f"last log lines: {' | '.join(triton.log_tail())}")
        log.info("stopping Triton")
        triton.stop()
        log.info("Triton stopped", extra={"code": triton.returncode})
        return 0
    finally:
        triton.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
