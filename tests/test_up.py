"""The README's first command: ``radmesh up`` brings up the whole product; ``radmesh down`` ends it.

The ``product`` fixture (conftest) runs ``radmesh up`` on moved ports and, at the end of the
session, ``radmesh down``, checking that nothing it started is left running. The chat UI
tests (tests/test_ui.py) ask their questions through the same product.
"""

import json
import socket
import subprocess
import sys
import urllib.request

from radmesh.common.grpcclient import wait_serving
from radmesh.services import SERVICES
from radmesh.up import TRITON_PORTS


def test_up_serves_every_part_and_the_sample(product):
    out = product.stdout()
    for name, info in SERVICES.items():
        assert f"{name:<12} serving on 127.0.0.1:{info.port + product.offset}" in out, out
        wait_serving(f"127.0.0.1:{info.port + product.offset}", timeout_s=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{info.metrics_port + product.offset}/metrics") as r:
            assert r.status == 200 and b"radmesh_grpc_request_duration_seconds" in r.read()
    assert f"triton       serving on 127.0.0.1:{TRITON_PORTS['grpc'] + product.offset}" in out
    with urllib.request.urlopen(f"http://127.0.0.1:{TRITON_PORTS['http'] + product.offset}/v2/health/ready") as r:
        assert r.status == 200
    assert f"radmesh is up: open {product.ui_url}" in out
    with urllib.request.urlopen(product.ui_url) as r:
        assert r.status == 200 and b"gradio" in r.read().lower()
    sample = product.workdir / "samples" / "pancreatic-tail-tumour"
    meta = json.loads((sample / "sample.json").read_text())
    assert meta["question"] == "segment the tumor in the tail of the pancreas and measure its size"
    truth = json.loads((sample / "truth.json").read_text())
    assert any(x["name"] == "Pancreas Tumor" for x in truth["lesions"])
    state = json.loads((product.workdir / "up.json").read_text())
    assert set(state["processes"]) == {*SERVICES, "ui"} and state["triton_pid"]
    for name in (*SERVICES, "ui", "triton"):
        assert (product.workdir / "logs" / f"{name}.log").is_file(), name


def test_a_second_up_from_the_same_folder_is_refused(product):
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "up", "--workdir", str(product.workdir),
                        "--port-offset", str(product.offset)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "already up" in r.stderr and "radmesh down" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_taken_port_is_named_before_anything_starts(tmp_path):
    def free(port: int) -> bool:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False

    with socket.socket() as s:
        # An offset at which every service's port is free (any of them may be a client's ephemeral
        # port at the moment), then the segmentation service's port taken: the one to be named.
        for offset in range(3000, 14000, 1000):
            ports = [p for svc in SERVICES.values() for p in (svc.port, svc.metrics_port)]
            if not all(free(p + offset) for p in ports + list(TRITON_PORTS.values())):
                continue
            try:
                s.bind(("127.0.0.1", SERVICES["segmentation"].port + offset))
                break
            except OSError:
                continue
        s.listen()
        taken = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "radmesh.cli", "up", "--workdir", str(tmp_path),
                            "--port-offset", str(offset)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"port {taken} (segmentation service) is in use" in lines[0], r.stderr
    assert not (tmp_path / "up.json").exists() and not (tmp_path / "logs").exists()


def test_down_without_up_says_so(tmp_path):
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "down", "--workdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "not up" in r.stdout
