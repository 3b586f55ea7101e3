"""``radmesh up`` / ``radmesh down`` / ``radmesh demo``: the whole product on one machine.

``up`` starts Triton (the ``tritonserver`` of the nvidia-pytriton wheel, on the shipped
weights), then every service of ``services.SERVICES`` with ``radmesh serve NAME`` (text,
segmentation, measurement, report, assistant — each waited for until grpc.health.v1 says
SERVING), makes the sample studies (:mod:`radmesh.samples`), starts the chat UI, prints its
address, and keeps running. Ctrl-C, SIGTERM or ``radmesh down`` stops everything: the UI,
the services (drained, like Kubernetes does) and Triton, with nothing left running.

Every port is checked before anything starts; a taken one is refused naming it and its
owner ("port 50053 (segmentation service) is in use on 127.0.0.1"). ``--port-offset N``
moves every default port by N (two copies side by side, or tests); ``--ui-port`` sets the
UI's. WORKDIR/up.json records the running processes for ``radmesh down``; logs go to
WORKDIR/logs/NAME.log.

``demo`` is the scripted path: the same mesh without the UI, the sample's question asked
once through the assistant (steps, reply, files in WORKDIR/demo), then everything stops.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from radmesh.common.errors import FailedPreconditionError, UnavailableError
from radmesh.common.grpcclient import wait_serving
from radmesh.services import SERVICES
from radmesh.triton.launcher import TritonProcess

HEALTH_TIMEOUT_S = 120.0
UI_TIMEOUT_S = 120.0
UI_PORT = 7860
TRITON_PORTS = {"grpc": 8001, "http": 8000, "metrics": 8002}
STATE_FILE = "up.json"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when ``radmesh up`` dies, even by SIGKILL (Linux), so nothing is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: radmesh down and the normal stop path still end the children


@dataclass
class Ports:
    """Every port the product listens on, by owner."""

    host: str = "127.0.0.1"
    offset: int = 0
    ui: int | None = None
    services: dict[str, tuple[int, int]] = field(default_factory=dict)  # name → (gRPC, metrics)
    triton: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.services = {n: (i.port + self.offset, i.metrics_port + self.offset) for n, i in SERVICES.items()}
        self.triton = {k: v + self.offset for k, v in TRITON_PORTS.items()}
        self.ui = self.ui if self.ui is not None else UI_PORT + self.offset

    def owners(self) -> dict[int, str]:
        out = {p: f"Triton {k}" for k, p in self.triton.items()}
        for name, (grpc_port, metrics) in self.services.items():
            out[grpc_port] = f"{name} service"
            out[metrics] = f"{name} service metrics"
        out[self.ui] = "UI"
        return out

    def address(self, name: str) -> str:
        return f"{self.host}:{self.services[name][0]}"

    def check_free(self) -> None:
        owners = self.owners()
        bad = [p for p in owners if not 1 <= p <= 65535]
        if bad:
            raise FailedPreconditionError(f"port {bad[0]} ({owners[bad[0]]}) is not a TCP port; choose another "
                                          "--port-offset")
        if len(owners) != len(self.owners_list()):
            raise FailedPreconditionError("two parts of radmesh would share a port; choose another --ui-port")
        for port, owner in sorted(owners.items()):
            with socket.socket() as s:
                try:
                    s.bind((self.host, port))
                except OSError:
                    raise FailedPreconditionError(
                        f"port {port} ({owner}) is in use on {self.host}; stop what holds it (radmesh down, if "
                        f"it is an earlier radmesh up) or move every port with --port-offset N") from None

    def owners_list(self) -> list[int]:
        return [*self.triton.values(), *(p for pair in self.services.values() for p in pair), self.ui]


def class_table_of(weights: str | os.PathLike | None) -> Path | None:
    """The class-table file the text service must serve for ``weights``, or None (MiniLM encodes theirs).

    Weights imported from a published checkpoint carry a fixed table (``table:`` encoder), written
    beside them by ``radmesh weights import``; the segmentation service refuses any other.
    """
    if weights is None:
        return None
    from radmesh.model.importer import table_path_for
    from radmesh.model.runtime import load

    _, meta = load(weights)
    if not str(meta.get("encoder_id", "")).startswith("table:"):
        return None
    table = table_path_for(weights)
    if not table.is_file():
        raise FailedPreconditionError(f"{weights} takes its class embeddings from a table file, but {table} is "
                                      f"missing (radmesh weights import writes both)")
    return table


def _service_cmd(name: str, ports: Ports, weights: Path | None = None) -> list[str]:
    grpc_port, metrics = ports.services[name]
    cmd = [sys.executable, "-m", "radmesh.cli", "serve", name, "--host", ports.host, "--port", str(grpc_port),
           "--metrics-port", str(metrics)]
    table = class_table_of(weights)
    if name == "text" and table is not None:
        cmd += ["--class-table", str(table)]
    if name == "segmentation":
        cmd += ["--triton-url", f"{ports.host}:{ports.triton['grpc']}", "--text-url", ports.address("text")]
        if weights is not None:
            cmd += ["--weights", str(weights)]
    if name == "assistant":
        for other in ("text", "segmentation", "measurement", "report"):
            cmd += [f"--{other}-url", ports.address(other)]
    return cmd


class Product:
    """The running processes of one ``radmesh up``."""

    def __init__(self, workdir: Path, ports: Ports, weights: str | os.PathLike | None = None):
        """``weights``: the model every part serves (default: the shipped reference weights)."""
        self.workdir, self.ports = workdir, ports
        self.weights = Path(weights).resolve() if weights else None
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.triton = TritonProcess(grpc_port=ports.triton["grpc"], http_port=ports.triton["http"],
                                    metrics_port=ports.triton["metrics"], log_path=self.logs / "triton.log",
                                    host=ports.host, weights=str(self.weights) if self.weights else None)

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log_file = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_die_with_parent)
        log_file.close()
        self.procs[name] = proc
        self._record()
        return proc

    def _exited(self, name: str) -> UnavailableError:
        tail = (self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
        return UnavailableError(f"{name} exited at start: {' | '.join(tail)}")

    def start_triton(self) -> None:
        self.triton.start()
        self._record()

    def start_service(self, name: str) -> None:
        proc = self._spawn(name, _service_cmd(name, self.ports, self.weights))
        try:
            wait_serving(self.ports.address(name), HEALTH_TIMEOUT_S)
        except UnavailableError:
            if proc.poll() is not None:
                raise self._exited(name) from None
            raise

    def start_ui(self, samples: Path) -> str:
        cmd = [sys.executable, "-m", "radmesh_ui", "--assistant-url", self.ports.address("assistant"),
               "--host", self.ports.host, "--port", str(self.ports.ui), "--samples", str(samples),
               "--workdir", str(self.workdir / "ui")]
        proc = self._spawn("ui", cmd)
        url = f"http://{self.ports.host}:{self.ports.ui}/"
        end = time.monotonic() + UI_TIMEOUT_S
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise self._exited("ui")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - our own loopback page
                    if r.status == 200:
                        return url
            except OSError:
                time.sleep(0.3)
        raise UnavailableError(f"the UI did not answer at {url} within {UI_TIMEOUT_S:.0f} s; see {self.logs / 'ui.log'}")

    def _record(self) -> None:
        state = {"pid": os.getpid(), "host": self.ports.host, "ui_port": self.ports.ui,
                 "processes": {n: p.pid for n, p in self.procs.items()},
                 "triton_pid": self.triton.pid}
        tmp = self.workdir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(tmp, self.workdir / STATE_FILE)

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise UnavailableError(f"{name} stopped unexpectedly (exit {p.returncode}); see "
                                       f"{self.logs / (name + '.log')}")
        if not self.triton.running:
            raise UnavailableError(f"Triton stopped unexpectedly (exit {self.triton.returncode}); see "
                                   f"{self.logs / 'triton.log'}")

    def stop(self) -> None:
        """The UI first (no new questions), then the services in reverse start order, then Triton."""
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # drain, like Kubernetes does
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.triton.stop()
        (self.workdir / STATE_FILE).unlink(missing_ok=True)


def _signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def start_mesh(product: Product) -> None:
    ports = product.ports
    product.start_triton()  # first: the segmentation service sends its windows there
    print(f"{'triton':<12} serving on {ports.host}:{ports.triton['grpc']}   metrics "
          f"http://{ports.host}:{ports.triton['metrics']}/metrics", flush=True)
    for name in SERVICES:
        product.start_service(name)
        print(f"{name:<12} serving on {ports.address(name)}   metrics "
              f"http://{ports.host}:{ports.services[name][1]}/metrics", flush=True)


def _previous_running(workdir: Path) -> int | None:
    state = workdir / STATE_FILE
    if not state.is_file():
        return None
    try:
        pid = int(json.loads(state.read_text())["pid"])
        os.kill(pid, 0)
    except (ValueError, KeyError, ProcessLookupError, PermissionError):
        state.unlink(missing_ok=True)  # stale: that radmesh up is gone
        return None
    return pid


def up(workdir: str | os.PathLike = ".radmesh", host: str = "127.0.0.1", port_offset: int = 0,
       ui_port: int | None = None, weights: str | os.PathLike | None = None) -> int:
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    running = _previous_running(workdir)
    if running is not None:
        raise FailedPreconditionError(f"radmesh is already up from {workdir} (pid {running}); radmesh down stops it")
    ports = Ports(host=host, offset=port_offset, ui=ui_port)
    ports.check_free()
    class_table_of(weights)  # refuse weights that cannot be served before anything starts
    from radmesh.samples import ensure_samples

    stop = _signals()
    product = Product(workdir, ports, weights)
    try:
        start_mesh(product)
        print(f"preparing the sample studies in {workdir / 'samples'} ...", flush=True)
        samples = ensure_samples(workdir / "samples")
        url = product.start_ui(samples)
        print(f"{'ui':<12} serving on {url}", flush=True)
        print(f"\nradmesh is up: open {url} — pick the sample and ask \"{_sample_question()}\".\n"
              f"Ctrl-C or `radmesh down --workdir {workdir}` stops everything.", flush=True)
        while not stop.wait(1.0):
            product.check_alive()
        print("stopping radmesh ...", flush=True)
        return 0
    finally:
        product.stop()


def _sample_question() -> str:
    from radmesh.samples import DEFAULT_SAMPLE

    return DEFAULT_SAMPLE.question


def down(workdir: str | os.PathLike = ".radmesh", timeout_s: float = 90.0) -> int:
    """Stop the ``radmesh up`` of ``workdir``; anything it left (it was SIGKILLed) is ended too."""
    workdir = Path(workdir).resolve()
    state_path = workdir / STATE_FILE
    if not state_path.is_file():
        print(f"radmesh is not up from {workdir} (no {STATE_FILE})")
        return 0
    state = json.loads(state_path.read_text())
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and _alive(pid):
        time.sleep(0.2)
    # what a killed `up` could not stop: its children, and Triton's process group
    leftovers = [p for p in state.get("processes", {}).values() if _alive(int(p))]
    for p in leftovers:
        os.kill(int(p), signal.SIGTERM)
    if state.get("triton_pid") and _alive(int(state["triton_pid"])):
        os.killpg(int(state["triton_pid"]), signal.SIGTERM)
        leftovers.append(state["triton_pid"])
    state_path.unlink(missing_ok=True)
    print(f"radmesh stopped (pid {pid}" + (f"; ended {len(leftovers)} leftover process(es)" if leftovers else "")
          + ")")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def demo(workdir: str | os.PathLike = ".radmesh", port_offset: int = 0) -> int:
    """The mesh without the UI, the sample's question once through the assistant, then stop."""
    from radmesh.assistant.client import AskResult, ask_stream
    from radmesh.assistant.core import Question
    from radmesh.common.imageio import read_volume
    from radmesh.report.artifacts import nifti_bytes, write_report_folder
    from radmesh.samples import DEFAULT_SAMPLE, ensure_sample

    workdir = Path(workdir).resolve()
    ports = Ports(offset=port_offset)
    ports.check_free()
    stop = _signals()
    product = Product(workdir, ports)
    try:
        start_mesh(product)
        folder = ensure_sample(DEFAULT_SAMPLE, workdir / "samples", progress=True)
        question = Question(DEFAULT_SAMPLE.question, formats=("seg", "sr", "nifti"), figures=True)
        print(f'\nasking the assistant at {ports.address("assistant")}: "{question.prompt}"', flush=True)
        result = None
        for item in ask_stream(ports.address("assistant"), question, read_volume(folder / "ct.nii.gz")):
            if stop.is_set():
                return 130
            if isinstance(item, AskResult):
                result = item
            else:
                print(f"  [{item.elapsed_s:6.1f} s] {item.state:<7} {item.message}", flush=True)
        assert result is not None
        files = dict(result.files)
        if result.labels is not None:
            files.setdefault("labels.nii.gz", nifti_bytes(result.labels))
        out = workdir / "demo"
        write_report_folder(out, files)
        print(f"\n{result.answer['text']}\n\nfiles in {out}: {', '.join(sorted(files))}", flush=True)
        if result.answer.get("report"):
            print("\n" + result.answer["report"]["text"], flush=True)
        return 0
    finally:
        product.stop()
