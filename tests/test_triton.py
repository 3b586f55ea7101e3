"""Triton: the model repository, a real tritonserver serving it, and ``radmesh serve triton``.

The server is the tritonserver binary of the nvidia-pytriton wheel (Triton 2.51, Python
backend), started on free loopback ports; every logits comparison is against the same
ONNX graph run in-process with ONNX Runtime. TensorRT cannot run here (no GPU): its
graph is checked in ONNX Runtime and its config against Triton's schema.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from conftest import free_port
from radmesh.common.errors import FailedPreconditionError, InvalidInputError, UnavailableError
from radmesh.triton import launcher
from radmesh.triton.launcher import CPU_MODEL, GPU_MODEL, TritonProcess, prepare_repository

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "model_repository"
E = 384
W = 96


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _tensors(cfg) -> list[tuple[str, str, str, list[int]]]:
    return [(kind, t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims))
            for kind, ts in (("input", cfg.input), ("output", cfg.output)) for t in ts]


def _ports() -> dict[str, int]:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    g, h, m = sorted(ports)
    return {"grpc_port": g, "http_port": h, "metrics_port": m}


# ---- the repository ---------------------------------------------------------------------------

def test_both_configs_parse_against_tritons_schema():
    cpu, gpu = _config(REPO / CPU_MODEL / "config.pbtxt"), _config(REPO / GPU_MODEL / "config.pbtxt")
    assert cpu.name == CPU_MODEL and cpu.backend == "python" and not cpu.platform
    assert gpu.name == GPU_MODEL and gpu.platform == "tensorrt_plan"
    assert [g.kind for g in cpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert [g.kind for g in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    for cfg in (cpu, gpu):
        assert cfg.max_batch_size == 8 and cfg.HasField("dynamic_batching")
    assert set(cpu.parameters) == {"onnx_path", "intra_op_threads"}
    assert (REPO / CPU_MODEL / "1" / "model.py").is_file()
    # a misspelt field is refused by the schema, so the parse above means something
    with pytest.raises(text_format.ParseError):
        text_format.Parse('name: "x"\nmax_batch_sise: 8\n', model_config_pb2.ModelConfig())


def test_cpu_and_gpu_variants_expose_identical_tensors():
    cpu, gpu = _config(REPO / CPU_MODEL / "config.pbtxt"), _config(REPO / GPU_MODEL / "config.pbtxt")
    assert _tensors(cpu) == _tensors(gpu) == [
        ("input", "image", "TYPE_FP32", [1, W, W, W]),
        ("input", "class_embedding", "TYPE_FP32", [-1, E]),
        ("output", "logits", "TYPE_FP32", [-1, W, W, W]),
    ]
    assert cpu.max_batch_size == gpu.max_batch_size


def test_build_script_profile_matches_the_gpu_config(tmp_path):
    """The plan scripts/build_trt_plan.sh builds (fake trtexec recording its arguments) fits universal_seg_trt."""
    gpu = _config(REPO / GPU_MODEL / "config.pbtxt")
    fake = tmp_path / "trtexec"
    args_file = tmp_path / "args.txt"
    fake.write_text('#!/usr/bin/env bash\nif [ "$1" = "--help" ]; then echo "--fp16 --skipInference"; exit 0; fi\n'
                    f'printf "%s\\n" "$@" > {args_file}\n'
                    'for a in "$@"; do case $a in --saveEngine=*) echo plan > "${a#--saveEngine=}";; esac; done\n')
    fake.chmod(0o755)
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "build_trt_plan.sh"), str(onnx_file), str(tmp_path / "p")],
                       env={"PATH": "/usr/bin:/bin", "TRTEXEC": str(fake), "HOME": str(tmp_path)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    args = dict(a.split("=", 1) for a in args_file.read_text().splitlines() if "=" in a)
    shapes = {k: dict(s.split(":") for s in args[k].split(",")) for k in ("--minShapes", "--maxShapes")}
    emb_dims = [d for t in gpu.input if t.name == "class_embedding" for d in t.dims]
    assert shapes["--maxShapes"]["image"] == f"{gpu.max_batch_size}x1x{W}x{W}x{W}"
    assert shapes["--maxShapes"]["class_embedding"] == f"{gpu.max_batch_size}x32x{emb_dims[-1]}"
    assert shapes["--minShapes"]["class_embedding"] == f"1x1x{emb_dims[-1]}"
    assert "--fp16" in args_file.read_text().split()


def test_prepared_repository_carries_the_weights_graph_and_threads(tmp_path):
    out = prepare_repository(tmp_path / "repo", threads=3)
    cfg = _config(out / CPU_MODEL / "config.pbtxt")
    onnx_path = Path(cfg.parameters["onnx_path"].string_value)
    assert onnx_path.is_absolute() and onnx_path.is_file()
    assert cfg.parameters["intra_op_threads"].string_value == "3"
    assert [list(t.dims) for t in cfg.input if t.name == "class_embedding"] == [[-1, E]]
    assert (out / CPU_MODEL / "1" / "model.py").read_text() == (REPO / CPU_MODEL / "1" / "model.py").read_text()
    assert not (out / GPU_MODEL).exists()                 # only what was asked for
    with pytest.raises(FailedPreconditionError, match="build_trt_plan.sh"):
        prepare_repository(tmp_path / "gpu", models=(GPU_MODEL,))   # no plan: it is built on the GPU node
    with pytest.raises(InvalidInputError, match="no model 'nope'"):
        prepare_repository(tmp_path / "x", models=("nope",))


def test_a_plan_in_the_source_is_linked_into_the_prepared_repository(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / GPU_MODEL / "1" / "model.plan").write_bytes(b"plan bytes")
    out = prepare_repository(tmp_path / "out", models=(GPU_MODEL,), source=src)
    assert (out / GPU_MODEL / "1" / "model.plan").read_bytes() == b"plan bytes"
    assert _tensors(_config(out / GPU_MODEL / "config.pbtxt")) == _tensors(_config(REPO / GPU_MODEL / "config.pbtxt"))


# ---- the graph the TensorRT plan is built from ------------------------------------------------

@pytest.fixture(scope="module")
def trt_graph(tmp_path_factory):
    from radmesh.model.export import export_for_tensorrt

    path = tmp_path_factory.mktemp("trt") / "universal_seg_trt.onnx"
    return export_for_tensorrt(path, verify_shapes=((1, 1), (2, 3)))


def test_tensorrt_graph_takes_a_table_per_window_and_matches_pytorch(trt_graph):
    import onnx

    from radmesh.model.export import onnx_metadata

    assert trt_graph.max_abs_diff is not None and trt_graph.max_abs_diff <= 1e-3
    assert trt_graph.heads == "matmul" and onnx_metadata(trt_graph.path)["radmesh.embedding_layout"] == "per_window"
    m = onnx.load(str(trt_graph.path))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*m.graph.input, *m.graph.output]}
    assert dims == {"image": ["batch", 1, W, W, W], "class_embedding": ["batch", "num_classes", E],
                    "logits": ["batch", "num_classes", W, W, W]}
    # per batch item, the graph's tensors are the GPU config's (batch axis dropped, symbols → -1)
    gpu = _config(REPO / GPU_MODEL / "config.pbtxt")
    assert {t.name: list(t.dims) for t in [*gpu.input, *gpu.output]} == \
        {k: [d if isinstance(d, int) else -1 for d in v[1:]] for k, v in dims.items()}


@pytest.mark.parametrize("b,k,checked", [(8, 1, (0, 7)), (1, 32, (0,))])
def test_tensorrt_graph_runs_at_the_profile_extremes(trt_graph, b, k, checked):
    """Batch 8 and K 32, the profile's maxima, each with its own table per window; the first
    and last windows against PyTorch (the windows are independent; checking all 8 doubles the time).

    Both at once (8 × 32) needs ≈ 25 GB of head intermediates in ONNX Runtime's MatMul form;
    that corner runs on the GPU node only. (1, 1) is part of the export's verification."""
    import onnxruntime as ort

    from radmesh.model.runtime import load

    model, _ = load()
    g = torch.Generator().manual_seed(b * 100 + k)
    image = torch.rand(b, 1, W, W, W, generator=g)
    table = torch.randn(b, k, E, generator=g)
    table = table / table.norm(dim=2, keepdim=True)          # unit-norm, like the text encoders' embeddings
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(trt_graph.path), so, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"image": image.numpy(), "class_embedding": table.numpy()})[0]
    assert got.shape == (b, k, W, W, W)
    for i in checked:
        with torch.inference_mode():
            ref = model(image[i:i + 1], table[i]).numpy()[0]
        assert np.abs(got[i] - ref).max() <= 1e-3, f"window {i}"


def test_build_script_refuses_the_cpu_graph(tmp_path):
    from radmesh.model.runtime import onnx_for

    cpu_graph, _ = onnx_for()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}   # python3 with onnx
    r = subprocess.run(["bash", str(ROOT / "scripts" / "build_trt_plan.sh"), str(cpu_graph), str(tmp_path / "p")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "radmesh export --tensorrt" in r.stderr
    assert not (tmp_path / "p").exists()


def test_per_window_export_refuses_a_batch_dependent_backbone(tmp_path):
    from radmesh.model.export import export_onnx
    from radmesh.model.network import build_model

    model = build_model("unet_universal", embed_dim=E)      # the published U-Net: batch-statistics norm
    with pytest.raises(InvalidInputError, match="batch"):
        export_onnx(model, tmp_path / "x.onnx", embedding_layout="per_window")
    assert not (tmp_path / "x.onnx").exists()


# ---- a real server ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def triton(triton_server):
    return triton_server


@pytest.fixture(scope="module")
def runner():
    from radmesh.model.onnx_runner import OnnxRunner
    from radmesh.model.runtime import onnx_for

    return OnnxRunner(onnx_for()[0])


@pytest.fixture(scope="module")
def client(triton):
    c = grpcclient.InferenceServerClient(triton.grpc_url)
    yield c
    c.close()


def _inputs(image: np.ndarray, table: np.ndarray) -> list[grpcclient.InferInput]:
    out = []
    for name, arr in (("image", image), ("class_embedding", table)):
        t = grpcclient.InferInput(name, list(arr.shape), "FP32")
        t.set_data_from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        out.append(t)
    return out


def _case(b: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((b, 1, W, W, W), dtype=np.float32)
    table = rng.standard_normal((k, E)).astype(np.float32)
    return image, table / np.linalg.norm(table, axis=1, keepdims=True)


@pytest.mark.parametrize("b", [1, 3])
def test_logits_through_triton_equal_onnx_runtime_in_process(client, runner, b):
    image, table = _case(b, 2, seed=b)
    got = client.infer(CPU_MODEL, _inputs(image, np.repeat(table[None], b, axis=0))).as_numpy("logits")
    ref = runner(image, table)
    assert got.shape == (b, 2, W, W, W)
    assert np.abs(got - ref).max() <= 1e-4
    assert np.abs(ref).max() > 0.1                        # not two maps of zeros


def test_windows_of_one_request_with_different_tables_each_get_their_own(client, runner):
    image, t0 = _case(2, 2, seed=10)
    _, t1 = _case(1, 2, seed=11)
    got = client.infer(CPU_MODEL, _inputs(image, np.stack([t0, t1]))).as_numpy("logits")
    assert np.abs(got[0] - runner(image[:1], t0)[0]).max() <= 1e-4
    assert np.abs(got[1] - runner(image[1:], t1)[0]).max() <= 1e-4


def test_concurrent_requests_with_different_k_are_each_answered_correctly(client, runner):
    cases = {k: _case(1, k, seed=20 + k) for k in (1, 3)}
    results: dict[int, np.ndarray | Exception] = {}

    def call(k: int) -> None:
        image, table = cases[k]
        try:
            results[k] = client.infer(CPU_MODEL, _inputs(image, table[None])).as_numpy("logits")
        except Exception as ex:  # noqa: BLE001 - reported below
            results[k] = ex

    threads = [threading.Thread(target=call, args=(k,)) for k in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for k, (image, table) in cases.items():
        assert isinstance(results[k], np.ndarray), results[k]
        assert results[k].shape == (1, k, W, W, W)
        assert np.abs(results[k] - runner(image, table)).max() <= 1e-4


def test_malformed_requests_get_errors_and_the_server_stays_up(client, runner):
    image, table = _case(1, 2, seed=30)
    bad = [
        (_inputs(np.zeros((1, 1, 64, 64, 64), np.float32), table[None]), "image"),            # wrong window
        (_inputs(image, np.zeros((1, 2, 100), np.float32)), "class_embedding"),               # wrong E
        (_inputs(np.repeat(image, 2, axis=0), table[None]), "batch"),                          # B differs
        (_inputs(image, np.zeros((1, 0, E), np.float32)), "K ≥ 1"),                            # no class
        (_inputs(image, np.full((1, 2, E), np.nan, np.float32)), "NaN"),                       # seen by model.py
        (_inputs(np.zeros((9, 1, W, W, W), np.float32), np.zeros((9, 1, E), np.float32)), "<= 8"),  # B > 8
    ]
    for inputs, what in bad:
        with pytest.raises(InferenceServerException) as err:
            client.infer(CPU_MODEL, inputs)
        assert what.lower() in str(err.value).lower(), str(err.value)
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT", str(err.value)
    assert client.is_server_live() and client.is_model_ready(CPU_MODEL)
    got = client.infer(CPU_MODEL, _inputs(image, table[None])).as_numpy("logits")
    assert np.abs(got - runner(image, table)).max() <= 1e-4


def test_system_shared_memory_round_trip(client, runner):
    image, table = _case(1, 2, seed=40)
    tables = np.ascontiguousarray(table[None])
    out_bytes = 2 * W ** 3 * 4
    tag = uuid.uuid4().hex[:8]
    regions = {}
    try:
        for name, nbytes in (("image", image.nbytes), ("class_embedding", tables.nbytes), ("logits", out_bytes)):
            key = f"/radmesh_test_{tag}_{name}"
            regions[name] = shm.create_shared_memory_region(f"{tag}_{name}", key, nbytes)
            client.register_system_shared_memory(f"{tag}_{name}", key, nbytes)
        shm.set_shared_memory_region(regions["image"], [image])
        shm.set_shared_memory_region(regions["class_embedding"], [tables])
        inputs = [grpcclient.InferInput("image", list(image.shape), "FP32"),
                  grpcclient.InferInput("class_embedding", list(tables.shape), "FP32")]
        inputs[0].set_shared_memory(f"{tag}_image", image.nbytes)
        inputs[1].set_shared_memory(f"{tag}_class_embedding", tables.nbytes)
        output = grpcclient.InferRequestedOutput("logits")
        output.set_shared_memory(f"{tag}_logits", out_bytes)
        result = client.infer(CPU_MODEL, inputs, outputs=[output])
        reply = result.get_response()
        assert [o.name for o in reply.outputs] == ["logits"]
        assert not any(reply.raw_output_contents)             # the logits are in the region, not the reply
        got = shm.get_contents_as_numpy(regions["logits"], np.float32, [1, 2, W, W, W])
        assert np.abs(got - runner(image, table)).max() <= 1e-4
    finally:
        for name, region in regions.items():
            client.unregister_system_shared_memory(f"{tag}_{name}")
            shm.destroy_shared_memory_region(region)


# ---- TritonProcess: failures, crash, restart ------------------------------------------------------

def test_missing_wheel_is_a_clear_failed_precondition(monkeypatch):
    real = launcher.importlib.util.find_spec
    monkeypatch.setattr(launcher.importlib.util, "find_spec", lambda n, *a: None if n == "pytriton" else real(n, *a))
    with pytest.raises(FailedPreconditionError, match=r"install nvidia-pytriton: scripts/bootstrap\.sh"):
        TritonProcess(**_ports()).start()


def test_bad_arguments_are_refused():
    with pytest.raises(InvalidInputError, match="must differ"):
        TritonProcess(grpc_port=9001, http_port=9001, metrics_port=9002)
    with pytest.raises(InvalidInputError, match="TCP port"):
        TritonProcess(grpc_port=0)
    with pytest.raises(InvalidInputError, match="as it is"):
        TritonProcess(REPO, weights="w.pt")


def test_a_model_that_does_not_load_is_unavailable_with_tritons_log(tmp_path):
    repo = prepare_repository(tmp_path / "repo")
    cfg_path = repo / CPU_MODEL / "config.pbtxt"
    cfg = _config(cfg_path)
    cfg.parameters["onnx_path"].string_value = str(tmp_path / "missing.onnx")
    cfg_path.write_text(text_format.MessageToString(cfg))
    triton = TritonProcess(repo, **_ports())
    t0 = time.monotonic()
    with pytest.raises(UnavailableError) as err:
        triton.start(timeout_s=120)
    assert "missing.onnx" in str(err.value) and "\n" not in str(err.value)
    assert time.monotonic() - t0 < 120 and not triton.running     # failed fast: Triton exited


def test_kill_is_a_crash_and_start_brings_it_back(tmp_path):
    triton = TritonProcess(**_ports(), threads=1, log_path=tmp_path / "triton.log")
    triton.start()
    try:
        pid, repo = triton.pid, triton.served_repository
        triton.kill()
        assert not triton.running and not _alive(pid)
        # the Python backend's /dev/shm region (64 MiB) is not left behind by the crash
        assert not list(Path("/dev/shm").glob(f"radmesh_{os.getpid()}_{triton.grpc_port}_*"))
        c = grpcclient.InferenceServerClient(triton.grpc_url)
        with pytest.raises(InferenceServerException):
            c.is_server_live(client_timeout=5)
        triton.start()                                            # same ports, same prepared repository
        assert triton.pid != pid and triton.served_repository == repo
        assert c.is_server_live() and c.is_model_ready(CPU_MODEL)
        c.close()
    finally:
        triton.stop()
    assert not repo.exists()                                      # the runtime copy goes with stop()
    assert "universal_seg" in (tmp_path / "triton.log").read_text()


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---- radmesh serve triton ---------------------------------------------------------------------------

def test_serve_triton_reports_ready_and_stops_cleanly_on_sigterm(tmp_path):
    ports = _ports()
    cmd = [sys.executable, "-m", "radmesh.cli", "serve", "triton", "--grpc-port", str(ports["grpc_port"]),
           "--http-port", str(ports["http_port"]), "--metrics-port", str(ports["metrics_port"])]
    err_path = tmp_path / "stderr.log"
    with open(err_path, "wb") as err:       # from another cwd: nothing may depend on the checkout being cwd
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = _read_line(proc, timeout_s=240)
        assert line.startswith(f"triton ready at 127.0.0.1:{ports['grpc_port']}"), (line, err_path.read_text())
        triton_pid = int(line.rsplit("pid ", 1)[1].rstrip(")\n"))
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{ports['grpc_port']}")
        assert c.is_server_ready() and c.is_model_ready(CPU_MODEL)
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, err_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 20
    while _alive(triton_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(triton_pid)
    logs = err_path.read_text()
    assert '"logger": "radmesh.triton"' in logs and "Triton stopped" in logs    # Triton's log as JSON lines


def test_serve_triton_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "serve", "triton", "--models", "nope",
                        *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in _ports().items()), [])],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("radmesh: error: no model 'nope'")


def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout_s)
    if not box:
        raise AssertionError(f"no ready line within {timeout_s} s")
    return box[0]
