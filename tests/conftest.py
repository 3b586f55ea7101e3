"""Shared fixtures: phantoms made on the spot, real service processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    name: str
    target: str
    metrics_port: int
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)


def start_service(name: str, tmp: Path, *extra: str) -> ServiceProcess:
    """``radmesh serve NAME`` as a real process on free loopback ports, once healthy."""
    from radmesh.common.grpcclient import wait_serving

    port, metrics_port = free_port(), free_port()
    log_path = tmp / f"{name}-{port}.log"
    cmd = [sys.executable, "-m", "radmesh.cli", "serve", name, "--host", "127.0.0.1", "--port", str(port),
           "--metrics-port", str(metrics_port), *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    svc = ServiceProcess(name, f"127.0.0.1:{port}", metrics_port, proc, log_path)
    try:
        wait_serving(svc.target, timeout_s=60)
    except Exception:
        proc.kill()
        raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')}") from None
    return svc


@pytest.fixture(scope="session")
def phantom_case(tmp_path_factory):
    """A mid-size phantom with every lesion class, written to disk once per session."""
    from radmesh.phantom.generator import PhantomConfig, generate, write_phantom

    out = tmp_path_factory.mktemp("phantom")
    phantom = generate(7, PhantomConfig(in_plane_size=256, spacing_xyz_mm=(1.3, 1.3, 2.0), slices=110,
                                        oblique=False, lesions=(26, 27, 28, 30, 32)))
    paths = write_phantom(phantom, out)
    return phantom, paths


@pytest.fixture(scope="module")
def measurement_service(tmp_path_factory):
    svc = start_service("measurement", tmp_path_factory.mktemp("svc"), "--drain-s", "10")
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory):
    """A real tritonserver serving ``universal_seg`` (CPU, shipped weights) on free loopback ports.

    Started once per session and shared: do not kill() or stop() it; to simulate a crash,
    start a TritonProcess of your own. Triton's log: ``triton_server.log_path``.
    """
    from radmesh.triton.launcher import TritonProcess

    log_path = tmp_path_factory.mktemp("triton") / "triton.log"
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    grpc_port, http_port, metrics_port = sorted(ports)
    triton = TritonProcess(grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, log_path=log_path)
    triton.start(timeout_s=300)
    yield triton
    triton.stop()


@dataclass
class RunningProduct:
    """A ``radmesh up`` (Triton, every service, the UI, the samples) on ports moved by ``offset``."""

    workdir: Path
    offset: int
    proc: subprocess.Popen
    lines: list[str]

    @property
    def assistant_url(self) -> str:
        from radmesh.services import SERVICES

        return f"127.0.0.1:{SERVICES['assistant'].port + self.offset}"

    @property
    def ui_url(self) -> str:
        from radmesh.up import UI_PORT

        return f"http://127.0.0.1:{UI_PORT + self.offset}/"

    def stdout(self) -> str:
        return "\n".join(self.lines)


def start_product(workdir: Path, attempts: int = 5) -> RunningProduct:
    """``radmesh up --workdir WORKDIR --port-offset N`` until it prints "radmesh is up"; another
    random N when one of its ports is taken (it refuses before starting anything)."""
    import random
    import threading

    for _ in range(attempts):
        offset = random.randrange(2000, 14000, 10)
        proc = subprocess.Popen([sys.executable, "-m", "radmesh.cli", "up", "--workdir", str(workdir),
                                 "--port-offset", str(offset)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines: list[str] = []
        up = threading.Event()

        def pump(proc=proc, lines=lines, up=up) -> None:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("radmesh is up"):
                    up.set()
            up.set()

        threading.Thread(target=pump, daemon=True).start()
        up.wait(timeout=900)
        if proc.poll() is None and any(ln.startswith("radmesh is up") for ln in lines):
            return RunningProduct(workdir, offset, proc, lines)
        proc.kill()
        proc.wait()
        if not any("is in use" in ln for ln in lines):
            raise RuntimeError("radmesh up did not come up:\n" + "\n".join(lines))
    raise RuntimeError(f"radmesh up found a taken port {attempts} times")


@pytest.fixture(scope="session")
def product(tmp_path_factory):
    """The whole product as the README's first command runs it. Teardown is ``radmesh down``,
    and checks that every process ``up`` started has gone."""
    import json

    workdir = tmp_path_factory.mktemp("product")
    running = start_product(workdir)
    yield running
    state = json.loads((workdir / "up.json").read_text())
    pids = [state["pid"], state["triton_pid"], *state["processes"].values()]
    down = subprocess.run([sys.executable, "-m", "radmesh.cli", "down", "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=180)
    assert down.returncode == 0 and "radmesh stopped" in down.stdout, down.stdout + down.stderr
    assert running.proc.wait(timeout=60) == 0, running.stdout()
    alive = []
    for pid in pids:
        try:
            os.kill(int(pid), 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    assert not alive, f"processes left running after radmesh down: {alive}"
    assert not (workdir / "up.json").exists()
