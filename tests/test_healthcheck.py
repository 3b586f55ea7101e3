"""``python -m radmesh.common.healthcheck`` (the services image's HEALTHCHECK) against a real loopback server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from grpc_health.v1 import health_pb2

from conftest import free_port
from radmesh.common.config import ServeConfig
from radmesh.common.healthcheck import default_target, port_of_command
from radmesh.common.server import RunningServer, ServiceSpec
from radmesh.services import SERVICES

SPEC = ServiceSpec(name="probe", full_names=("radmesh.v1.Probe",), register=lambda server, cfg: None)


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radmesh.common.healthcheck", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.fixture
def server():
    running = RunningServer(SPEC, ServeConfig(host="127.0.0.1", port=free_port(), metrics_port=0, drain_s=0))
    yield running
    running.server.stop(grace=0).wait()


def test_serving_server_is_healthy_and_draining_one_is_not(server):
    target = f"127.0.0.1:{server.port}"
    assert _run("--target", target).returncode == 0
    assert _run("--target", target, "--service", "radmesh.v1.Probe").returncode == 0
    out = _run("--target", target, "--service", "radmesh.v1.NoSuchService")
    assert out.returncode == 1 and "NOT_FOUND" in out.stderr
    server._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)      # what SIGTERM's drain does first
    out = _run("--target", target)
    assert out.returncode == 1 and "NOT_SERVING" in out.stderr


def test_port_from_environment_and_nothing_listening():
    port = free_port()
    out = _run("--timeout-s", "1", env={"RADMESH_PORT": str(port)})
    assert out.returncode == 1 and f"127.0.0.1:{port}" in out.stderr and "UNAVAILABLE" in out.stderr


def test_port_of_the_command_pid_1_runs(tmp_path, monkeypatch):
    assert port_of_command(["/venv/bin/python", "/venv/bin/radmesh", "serve", "text"]) == SERVICES["text"].port
    assert port_of_command(["docker-init", "--", "radmesh", "serve", "report", "--port", "6000"]) == 6000
    assert port_of_command(["radmesh", "serve", "measurement", "--metrics-port=9000", "--port=6001"]) == 6001
    assert port_of_command(["radmesh", "serve", "triton"]) is None
    assert port_of_command(["radmesh", "serve", "triton", "--port", "8001"]) is None
    assert port_of_command(["python", "-m", "radmesh_ui", "--port", "7860"]) is None
    monkeypatch.delenv("RADMESH_PORT", raising=False)
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/radmesh/venv/bin/python\0/opt/radmesh/venv/bin/radmesh\0serve\0assistant\0")
    assert default_target(cmdline) == f"127.0.0.1:{SERVICES['assistant'].port}"
    assert default_target(tmp_path / "missing") is None
    monkeypatch.setenv("RADMESH_PORT", "7001")
    assert default_target(cmdline) == "127.0.0.1:7001"
