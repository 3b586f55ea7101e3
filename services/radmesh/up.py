"""``radmesh up``: the whole mesh on one machine, as processes, on its defaults.

Starts every service of ``services.SERVICES`` with ``radmesh serve NAME``, waits
for each to report SERVING on grpc.health.v1, answers the sample study (a
phantom generated from a fixed seed, so every machine gets the same one) through
the running services, then keeps the mesh up until Ctrl-C or SIGTERM and drains
every process on the way out. Logs go to WORKDIR/logs/NAME.log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from radmesh.common.errors import UnavailableError
from radmesh.common.grpcclient import wait_serving
from radmesh.services import SERVICES

HEALTH_TIMEOUT_S = 60.0


def _start(name: str, logs: Path) -> subprocess.Popen:
    info = SERVICES[name]
    log_file = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
    cmd = [sys.executable, "-m", "radmesh.cli", "serve", name, "--host", "127.0.0.1",
           "--port", str(info.port), "--metrics-port", str(info.metrics_port)]
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # drain, like Kubernetes does
    for name, p in procs.items():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _sample(workdir: Path, seed: int) -> Path:
    from radmesh.phantom.generator import generate, write_phantom

    folder = workdir / f"sample-seed{seed}"
    if not (folder / "truth.json").exists():
        print(f"generating the sample study (phantom seed {seed}) in {folder} ...", flush=True)
        write_phantom(generate(seed, progress=True), folder)
    return folder


DEMO_QUESTION = "segment the pancreatic tumor and measure it"


def _demo(folder: Path) -> None:
    from radmesh.common.imageio import read_volume
    from radmesh.measurement.client import measure_remote
    from radmesh.measurement.summary import format_text
    from radmesh.text.client import parse_remote

    text_target = f"127.0.0.1:{SERVICES['text'].port}"
    intent = parse_remote(text_target, DEMO_QUESTION)
    understood = ", ".join(t["name"] + (f" ({t['subregion']})" if t["subregion"] else "") for t in intent["targets"])
    print(f'\n"{DEMO_QUESTION}" → text service at {text_target}: {understood}; '
          f"actions {', '.join(intent['actions'])}", flush=True)
    target = f"127.0.0.1:{SERVICES['measurement'].port}"
    print(f"\nmeasuring {folder / 'labels.nii.gz'} through the measurement service at {target}:\n", flush=True)
    result = measure_remote(target, read_volume(folder / "ct.nii.gz"), read_volume(folder / "labels.nii.gz"))
    print(format_text(result), flush=True)


def up(workdir: str | os.PathLike = ".radmesh", exit_after_demo: bool = False, seed: int = 0) -> int:
    workdir = Path(workdir)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, info in SERVICES.items():
            procs[name] = _start(name, logs)
            target = f"127.0.0.1:{info.port}"
            try:
                wait_serving(target, HEALTH_TIMEOUT_S)
            except UnavailableError:
                if procs[name].poll() is not None:
                    tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                    raise UnavailableError(f"{name} service exited at start: {' | '.join(tail)}") from None
                raise
            print(f"{name:<12} serving on {target}   metrics http://127.0.0.1:{info.metrics_port}/metrics",
                  flush=True)
        _demo(_sample(workdir, seed))
        if exit_after_demo:
            return 0
        print("\nradmesh is up. Ctrl-C stops every service.", flush=True)
        while not stop.wait(1.0):
            for name, p in procs.items():
                if p.poll() is not None:
                    raise UnavailableError(f"{name} service stopped unexpectedly (exit {p.returncode}); "
                                           f"see {logs / (name + '.log')}")
        return 0
    finally:
        _stop(procs)
