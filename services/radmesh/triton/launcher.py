"""A real ``tritonserver`` process serving radmesh's model repository.

    with TritonProcess(grpc_port=8001) as triton:        # prepare, start, wait until ready
        client = tritonclient.grpc.InferenceServerClient(triton.grpc_url)

The server. The PyPI wheel ``nvidia-pytriton`` carries a real Triton Inference
Server binary (Triton 2.51 in pytriton 0.7.0) with the Python backend; we use that
binary only, not pytriton's Python API. Running it on our own repository takes what
the wheel leaves out (docs: ENVIRONMENT.md): a backend directory holding the Python
backend *and* the stub built for this Python (:func:`backend_directory`, made once
under the cache), ``LD_LIBRARY_PATH`` with this Python's ``libpython`` first (the stub
links it, and a system copy of another patch release breaks it) and the wheel's
libraries, and this interpreter's ``bin`` first on ``PATH`` (the stub runs the Python
found there; that is how ``model.py`` imports ``radmesh``). GPU nodes run NVIDIA's
Triton container instead, on the same repository.

The repository. ``model_repository/`` in the source tree holds the CPU model
``universal_seg`` (Python backend + ONNX Runtime) and the GPU model
``universal_seg_trt`` (TensorRT plan, built on the GPU node). With ``repository=None``
:class:`TritonProcess` serves a runtime copy (:func:`prepare_repository`) whose
configs carry the class-table width E of the weights, the path of their verified
ONNX graph (:func:`radmesh.model.runtime.onnx_for`) and the thread count; only the
models asked for are copied and loaded (``--model-control-mode=explicit``), so a CPU
host never tries to load the GPU-only model.
"""

from __future__ import annotations

import atexit
import collections
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from radmesh.common.errors import FailedPreconditionError, InvalidInputError, UnavailableError

log = logging.getLogger("radmesh.triton")

CPU_MODEL = "universal_seg"          # Python backend + ONNX Runtime, KIND_CPU
GPU_MODEL = "universal_seg_trt"      # TensorRT plan, KIND_GPU
INSTALL_HINT = "install nvidia-pytriton: scripts/bootstrap.sh"
PLAN_HINT = ("build it on the GPU node: radmesh export --tensorrt --out universal_seg_trt.onnx && "
             "scripts/build_trt_plan.sh universal_seg_trt.onnx model_repository/universal_seg_trt/1/model.plan")
LOG_TAIL_LINES = 200                 # kept in memory for error messages
ERROR_TAIL_LINES = 12                # quoted in an UnavailableError
# The Python backend moves tensors between Triton and the stub through a /dev/shm region
# that grows on demand; start at 64 MiB and grow by 64 MiB (one window's K=16 logits are
# 57 MiB) instead of the backend's 1 MiB steps.
PYTHON_SHM_BYTES = 64 << 20


@dataclass(frozen=True)
class TritonInstall:
    """Where the ``tritonserver`` of the nvidia-pytriton wheel lives."""

    root: Path          # site-packages/pytriton/tritonserver
    binary: Path        # root/bin/tritonserver
    libs: Path          # site-packages/nvidia_pytriton.libs (the binary's bundled shared libraries)
    version: str        # the nvidia-pytriton version

    @property
    def stub(self) -> Path:
        """The Python backend stub built for this interpreter's Python version."""
        return self.root / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / \
            "triton_python_backend_stub"


def find_triton() -> TritonInstall:
    """The installed nvidia-pytriton wheel's server, or FailedPreconditionError saying how to install it."""
    # find_spec does not import pytriton (whose API declares numpy<2; we only want its binary)
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FailedPreconditionError(f"the Triton server binary is missing ({INSTALL_HINT})")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    install = TritonInstall(root=root, binary=root / "bin" / "tritonserver",
                            libs=root.parent.parent / "nvidia_pytriton.libs",
                            version=importlib.metadata.version("nvidia-pytriton"))
    for path in (install.binary, root / "backends" / "python" / "libtriton_python.so"):
        if not path.is_file():
            raise FailedPreconditionError(f"{path} is missing: the nvidia-pytriton wheel is incomplete ({INSTALL_HINT})")
    if not install.stub.is_file():
        raise FailedPreconditionError(f"nvidia-pytriton {install.version} has no Python backend stub for Python "
                                      f"{sys.version_info[0]}.{sys.version_info[1]} ({install.stub})")
    return install


def cache_root() -> Path:
    from radmesh.model.runtime import cache_dir

    return cache_dir() / "triton"


def backend_directory(install: TritonInstall) -> Path:
    """A ``--backend-directory`` whose ``python/`` has the backend and this Python's stub.

    Made once per wheel version and Python version under the radmesh cache, atomically
    (built in a temporary folder, then renamed), so concurrent starts never see half of it.
    """
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    target = cache_root() / f"backends-pytriton{install.version}-py{py}"
    if (target / "python" / "triton_python_backend_stub").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".backends-", dir=target.parent))
    try:
        shutil.copytree(install.root / "backends" / "python", tmp / "python",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(install.stub, tmp / "python" / "triton_python_backend_stub")
        try:
            os.rename(tmp, target)
        except OSError:                 # another process made it first
            if not (target / "python" / "triton_python_backend_stub").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@lru_cache(maxsize=4)
def server_flags(binary: Path) -> frozenset[str]:
    """The ``--flags`` this tritonserver build knows (from its ``--help``)."""
    env = {**os.environ, "LD_LIBRARY_PATH": _library_path(None)}
    try:
        out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired) as ex:
        raise FailedPreconditionError(f"{binary} does not run ({type(ex).__name__}: {ex})") from ex
    text = out.stdout + out.stderr
    return frozenset(w.split("=")[0].rstrip(",.") for w in text.split() if w.startswith("--"))


def source_repository() -> Path:
    """The source tree's ``model_repository/`` (found from this file, so from any cwd)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "model_repository"
        if (cand / CPU_MODEL / "config.pbtxt").is_file():
            return cand
    raise FailedPreconditionError("model_repository/ not found next to the radmesh sources; "
                                  "pass the repository explicitly (--model-repository)")


def _require_tritonclient() -> None:
    if importlib.util.find_spec("tritonclient") is None:
        raise FailedPreconditionError("the Triton client (tritonclient) is missing: install it with "
                                      "scripts/bootstrap.sh")


def read_config(path: Path):
    """A ``config.pbtxt`` parsed against Triton's own schema (``model_config_pb2.ModelConfig``)."""
    _require_tritonclient()
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as ex:
        raise FailedPreconditionError(f"{path}: not a valid Triton model config ({ex})") from ex


def _write_config(path: Path, config, source: Path) -> None:
    from google.protobuf import text_format

    text = (f"# generated by radmesh.triton.launcher from {source}; edit that file, not this copy\n"
            + text_format.MessageToString(config))
    path.write_text(text)


def _set_embed_dim(config, embed_dim: int) -> None:
    for tensor in config.input:
        if tensor.name == "class_embedding":
            tensor.dims[-1] = int(embed_dim)
            return
    raise FailedPreconditionError(f"model {config.name} has no class_embedding input")


def prepare_repository(out: str | os.PathLike, *, weights: str | os.PathLike | None = None,
                       models: tuple[str, ...] = (CPU_MODEL,), threads: int | None = None,
                       source: str | os.PathLike | None = None) -> Path:
    """Write a servable copy of ``source`` (default :func:`source_repository`) holding ``models`` to ``out``.

    Every model's ``class_embedding`` width becomes the weights' E. The CPU model's
    parameters name the verified ONNX graph of ``weights`` (default: the shipped weights;
    exported and cached on first use) and ``threads`` ONNX Runtime threads (None: one per
    core). The GPU model needs ``1/model.plan`` in the source (built on the GPU node); it is
    linked, not copied.
    """
    from radmesh.model.runtime import load, onnx_for

    src = Path(source) if source else source_repository()
    if threads is not None and int(threads) < 1:
        raise InvalidInputError(f"threads must be at least 1, got {threads}")
    if not models:
        raise InvalidInputError("no model to serve")
    known = sorted(p.name for p in src.iterdir() if (p / "config.pbtxt").is_file()) if src.is_dir() else []
    for name in models:
        if name not in known:
            raise InvalidInputError(f"no model {name!r} in {src} (known: {', '.join(known) or 'none'})")
    model, _ = load(weights)
    embed_dim = int(model.embed_dim)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in models:
        dst = out / name
        shutil.rmtree(dst, ignore_errors=True)
        config = read_config(src / name / "config.pbtxt")
        _set_embed_dim(config, embed_dim)
        if config.backend == "python":
            onnx_path, _ = onnx_for(weights)
            shutil.copytree(src / name, dst, ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.plan"))
            config.parameters["onnx_path"].string_value = str(Path(onnx_path).resolve())
            config.parameters["intra_op_threads"].string_value = str(int(threads) if threads else 0)
        elif config.platform == "tensorrt_plan":
            plan = src / name / "1" / "model.plan"
            if not plan.is_file():
                raise FailedPreconditionError(f"{name} needs {plan}, a TensorRT plan made on the GPU node where "
                                              f"Triton runs ({PLAN_HINT})")
            (dst / "1").mkdir(parents=True)
            os.symlink(plan.resolve(), dst / "1" / "model.plan")
        else:
            shutil.copytree(src / name, dst, ignore=shutil.ignore_patterns("__pycache__"))
        _write_config(dst / "config.pbtxt", config, src / name / "config.pbtxt")
    return out


def _library_path(extra: Path | None) -> str:
    """This Python's libdir first (the stub links libpython3.x), then the wheel's libraries."""
    parts = [sysconfig.get_config_var("LIBDIR") or "", str(extra or ""), os.environ.get("LD_LIBRARY_PATH", "")]
    return ":".join(p for p in parts if p)


_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
_live: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """A Python process that exits without stop() must not leave a tritonserver behind."""
    for triton in list(_live):
        triton.stop(timeout_s=5)


class TritonProcess:
    """One ``tritonserver`` process: prepared repository, start, readiness, log forwarding, stop.

    ``repository``: serve this repository as it is (``weights`` and ``threads`` then do not
    apply); None: a runtime copy of ``model_repository/`` made by :func:`prepare_repository`
    under the radmesh cache (``RADMESH_CACHE``), removed again by :meth:`stop`.
    ``models``: what is loaded (explicit model control). ``log_path``: Triton's log lines
    go to this file; without it they go to the ``radmesh.triton`` logger (JSON on stderr
    under ``radmesh serve``). ``host``: the address the three endpoints listen on.
    """

    def __init__(self, repository: Path | None = None, *, grpc_port: int = 8001, http_port: int = 8000,
                 metrics_port: int = 8002, weights: str | None = None, models: tuple[str, ...] = (CPU_MODEL,),
                 threads: int | None = None, log_path: Path | None = None, host: str = "127.0.0.1"):
        ports = {"grpc_port": grpc_port, "http_port": http_port, "metrics_port": metrics_port}
        for name, port in ports.items():
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidInputError(f"{name} {port!r} is not a TCP port (1-65535)")
        if len(set(ports.values())) != 3:
            raise InvalidInputError(f"the gRPC, HTTP and metrics ports must differ, got {sorted(ports.values())}")
        models = tuple(models)
        if not models or any(not m or "/" in m for m in models):
            raise InvalidInputError(f"models must name at least one model, got {models!r}")
        if threads is not None and int(threads) < 1:
            raise InvalidInputError(f"threads must be at least 1, got {threads}")
        if repository is not None and (weights is not None or threads is not None):
            raise InvalidInputError("weights and threads configure the prepared repository; "
                                    "a given repository is served as it is")
        self.repository = Path(repository).resolve() if repository is not None else None
        self.grpc_port, self.http_port, self.metrics_port = grpc_port, http_port, metrics_port
        self.weights, self.models, self.threads, self.host = weights, models, threads, host
        self.log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen | None = None
        self._group_killed = False
        self._shm_prefix = ""
        self._prepared: Path | None = None
        self._reader: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._lock = threading.Lock()

    # ---- properties -------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def served_repository(self) -> Path | None:
        """The repository the server runs on (the prepared copy when ``repository`` was None)."""
        return self.repository or self._prepared

    def log_tail(self, lines: int = ERROR_TAIL_LINES) -> list[str]:
        with self._lock:
            return list(self._tail)[-lines:]

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self, timeout_s: float = 180) -> None:
        """Start tritonserver and return once it is live and ready and every model is ready.

        On failure (the binary missing, a model that does not load, a busy port, the
        timeout) the process is stopped and UnavailableError (FailedPreconditionError for
        a missing install or model files) carries the last lines of Triton's log.
        """
        if self.running:
            raise FailedPreconditionError(f"tritonserver is already running (pid {self.pid})")
        install = find_triton()
        _require_tritonclient()
        repo = self._repository_to_serve()
        cmd = self._command(install, repo)
        env = {**os.environ, "LD_LIBRARY_PATH": _library_path(install.libs),
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        with self._lock:
            self._tail.clear()
        log.info("starting tritonserver %s (models %s)", install.version, ",".join(self.models),
                 extra={"port": self.grpc_port, "metrics_port": self.metrics_port})
        t0 = time.monotonic()
        # own session: Ctrl-C in a terminal reaches us, not Triton, and kill() takes the stubs too
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, cwd=str(repo), start_new_session=True)
        self._group_killed = False
        _live.add(self)
        self._reader = threading.Thread(target=self._forward_log, args=(self._proc,), daemon=True,
                                        name="triton-log")
        self._reader.start()
        try:
            self._wait_ready(t0 + float(timeout_s), timeout_s)
        except BaseException:
            self.kill()
            raise
        log.info("tritonserver ready in %.1f s", time.monotonic() - t0,
                 extra={"duration_s": round(time.monotonic() - t0, 3), "pid": self.pid, "port": self.grpc_port})

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (Triton finishes in-flight requests and unloads), then SIGKILL after ``timeout_s``."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop within %.0f s; killing it", timeout_s)
        self.kill()
        if self._prepared is not None:
            shutil.rmtree(self._prepared, ignore_errors=True)
            self._prepared = None

    def kill(self) -> None:
        """SIGKILL tritonserver and its backend stubs at once (what a crash looks like to a client)."""
        proc = self._proc
        if proc is None:
            return
        if not self._group_killed:
            # the group: Python backend stubs included. Once only: after that the group is empty
            # and its id, free again, could name someone else's group.
            self._group_killed = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._remove_shm_regions()
        _live.discard(self)

    def _remove_shm_regions(self) -> None:
        """Unlink this server's Python-backend regions in /dev/shm (64 MiB each and up).

        Triton removes them when it unloads its models; a SIGKILLed or crashed server leaves
        them behind, and tmpfs keeps their memory until they are unlinked. The prefix is this
        TritonProcess's own (launcher pid and gRPC port), and the server is gone by now.
        """
        shm_dir = Path("/dev/shm")
        if not self._shm_prefix or not shm_dir.is_dir():
            return
        for region in shm_dir.glob(self._shm_prefix + "*"):
            try:
                region.unlink()
            except OSError:
                pass

    def __enter__(self) -> TritonProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"TritonProcess(grpc={self.grpc_url}, models={','.join(self.models)}, pid={self.pid})"

    # ---- internals --------------------------------------------------------------------------
    def _repository_to_serve(self) -> Path:
        if self.repository is not None:
            for name in self.models:
                if not (self.repository / name / "config.pbtxt").is_file():
                    raise FailedPreconditionError(f"{self.repository} has no model {name!r} "
                                                  f"({self.repository / name / 'config.pbtxt'} is missing)")
            return self.repository
        if self._prepared is None:
            cache_root().mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix="repository-", dir=cache_root()))
            try:
                prepare_repository(tmp, weights=self.weights, models=self.models, threads=self.threads)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._prepared = tmp
        return self._prepared

    def _command(self, install: TritonInstall, repo: Path) -> list[str]:
        flags = server_flags(install.binary)
        # Python-backend shared-memory regions are named per server: two servers on one host
        # (tests, a laptop running `radmesh up` twice) must not share them.
        prefix = self._shm_prefix = f"radmesh_{os.getpid()}_{self.grpc_port}_"
        cmd = [str(install.binary), f"--model-repository={repo}",
               f"--backend-directory={backend_directory(install)}",
               "--model-control-mode=explicit", *[f"--load-model={m}" for m in self.models],
               "--disable-auto-complete-config", "--strict-readiness=true", "--exit-on-error=true",
               f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
               f"--http-address={self.host}", f"--http-port={self.http_port}",
               f"--metrics-port={self.metrics_port}",
               f"--backend-config=python,shm-region-prefix-name={prefix}",
               f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_BYTES}",
               f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_BYTES}"]
        if "--metrics-address" in flags:
            cmd.append(f"--metrics-address={self.host}")
        if "--allow-client-shm" in flags:   # newer servers refuse client shared memory without it
            cmd.append("--allow-client-shm=true")
        return cmd

    def _wait_ready(self, deadline: float, timeout_s: float) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while True:
                rc = self._proc.poll()
                if rc is not None:
                    self._reader.join(timeout=5)
                    raise UnavailableError(f"tritonserver exited with code {rc} before it was ready; "
                                           f"last log lines: {self._tail_text()}")
                try:
                    if (client.is_server_live(client_timeout=5) and client.is_server_ready(client_timeout=5)
                            and all(client.is_model_ready(m, client_timeout=5) for m in self.models)):
                        return
                except InferenceServerException:
                    pass                     # not listening yet
                if time.monotonic() > deadline:
                    raise UnavailableError(f"tritonserver was not ready with models {', '.join(self.models)} "
                                           f"within {timeout_s:.0f} s; last log lines: {self._tail_text()}")
                time.sleep(0.25)
        finally:
            client.close()

    def _tail_text(self) -> str:
        lines = [line.strip()[:300] for line in self.log_tail(ERROR_TAIL_LINES) if line.strip()]
        return " | ".join(lines) or "(no output)"

    def _forward_log(self, proc: subprocess.Popen) -> None:
        """Keep the last lines for errors; write each to ``log_path`` or the ``radmesh.triton`` logger."""
        sink = open(self.log_path, "a", encoding="utf-8") if self.log_path else None
        try:
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._lock:
                    self._tail.append(line)
                if sink is not None:
                    sink.write(line + "\n")
                    sink.flush()
                elif line.strip():
                    # Triton's glog prefix: I/W/E/F + MMDD time thread file:line] message
                    level = _LEVELS.get(line[:1], logging.INFO) if line[1:5].isdigit() else logging.INFO
                    message = line.split("] ", 1)[1] if "] " in line and line[1:5].isdigit() else line
                    if len(message) >= 2 and message[0] == message[-1] == '"':
                        message = message[1:-1]             # Triton ≥ 2.4x quotes its messages
                    log.log(level, "%s", message, extra={"service": "triton", "pid": proc.pid})
        finally:
            proc.stdout.close()
            if sink is not None:
                sink.close()
