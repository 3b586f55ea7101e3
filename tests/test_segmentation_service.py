"""`radmesh serve segmentation` as a real process: text service, Triton and the segmentation
service on loopback, a small phantom through gRPC, compared with the in-process pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import free_port, start_service
from radmesh.common import vocabulary as vocab
from radmesh.common.imageio import read_volume
from radmesh.model.evaluate import default_weights_path
from radmesh.segmentation.client import list_classes_remote, read_events, segment_remote, segment_requests
from radmesh.v1 import segmentation_pb2_grpc

pytestmark = pytest.mark.skipif(not default_weights_path().is_file(),
                                reason="reference weights are not in this checkout")

PROMPT = "segment the liver and the pancreatic tumor"
CLASSES = (vocab.LIVER, vocab.PANCREAS_TUMOR)
SERVICE = "radmesh.v1.SegmentationService"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small phantom (96² × 64 slices at 4 × 4 × 5 mm: 8 windows of 96³ in --fast) on disk."""
    from radmesh.phantom.generator import PhantomConfig, generate, write_phantom

    phantom = generate(3, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(4.0, 4.0, 5.0), slices=64,
                                        oblique=False, lesions=(vocab.PANCREAS_TUMOR,)))
    paths = write_phantom(phantom, tmp_path_factory.mktemp("segcase"))
    return phantom, paths


@pytest.fixture(scope="module")
def reference(case, tmp_path_factory):
    """The in-process command's output (ONNX Runtime, same weights): labels and segmentation.json."""
    from radmesh.model.runtime import segment_to_folder

    phantom, _ = case
    out = tmp_path_factory.mktemp("inprocess")
    summary = segment_to_folder(phantom.ct, out, prompt=PROMPT, fast=True)
    return read_volume(out / "labels.nii.gz"), summary, out


@pytest.fixture(scope="module")
def text_service(tmp_path_factory):
    svc = start_service("text", tmp_path_factory.mktemp("text"))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def segmentation_service(tmp_path_factory, triton_server, text_service):
    svc = start_service("segmentation", tmp_path_factory.mktemp("seg"), "--triton-url", triton_server.grpc_url,
                        "--text-url", text_service.target, "--drain-s", "5")
    yield svc
    svc.stop()


def _health(target: str) -> int:
    with grpc.insecure_channel(target) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5).status


def _call(target: str, requests) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(target) as ch:
        with pytest.raises(grpc.RpcError) as e:
            read_events(segmentation_pb2_grpc.SegmentationServiceStub(ch).Segment(iter(list(requests)), timeout=120))
    return e.value.code(), e.value.details()


def test_segment_over_grpc_matches_in_process(case, reference, segmentation_service):
    phantom, _ = case
    ref_labels, ref_summary, _ = reference
    events: list[tuple[str, int, int]] = []
    labels, summary = segment_remote(segmentation_service.target, phantom.ct, prompt=PROMPT, fast=True,
                                     progress=lambda stage, done, total, _m: events.append((stage, done, total)),
                                     timeout_s=600)

    # the served path (service → Triton, shared memory) must not change the result
    assert labels.geometry.matches(phantom.ct.geometry) and labels.array.dtype == np.uint8
    assert np.array_equal(labels.array, ref_labels.array)
    assert [(c["class_index"], c["voxel_count"]) for c in summary["classes"]] == \
        [(c["class_index"], c["voxel_count"]) for c in ref_summary["classes"]]
    for c in summary["classes"]:
        d = dice(labels.array == c["class_index"], phantom.labels.array == c["class_index"])
        print(f"served Dice vs phantom truth, {c['name']}: {d:.3f} ({c['volume_ml']:.1f} mL)")
    _, meta = __import__("radmesh.model.runtime", fromlist=["load"]).load()
    assert summary["model"]["model_version"] == meta["model_version"]
    assert summary["model"]["class_table_sha256"] == meta["table_sha256"]
    assert summary["model"]["embedding_backend"] == "minilm" and summary["elapsed_s"] > 0
    assert summary["intent"] == ref_summary["intent"]              # the parse the service segmented from

    # progress: stages in the proto's order, windows done increasing from 0 to the total
    order = ["receiving", "parsing", "encoding", "preprocessing", "inference", "postprocessing", "sending"]
    stages = [s for s, _, _ in events]
    assert sorted(set(stages), key=order.index) == order
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)
    windows = [(d, t) for s, d, t in events if s == "inference"]
    assert windows[0][0] == 0 and windows[-1][0] == windows[-1][1] == ref_summary["windows"] >= 4
    assert all(b[0] > a[0] for a, b in zip(windows, windows[1:]))


def test_list_classes_names_validated_classes_and_model(segmentation_service):
    from radmesh.model.runtime import load

    _, meta = load()
    response = list_classes_remote(segmentation_service.target)
    assert [c["class_index"] for c in response["classes"]] == sorted(meta["classes"])
    assert all(c["validated"] for c in response["classes"])
    liver = next(c for c in response["classes"] if c["class_index"] == vocab.LIVER)
    assert liver["name"] == "Liver" and liver["kind"] == "organ" and "right lobe" in liver["subregions"]
    assert response["model"]["model_id"] == "radmesh-unet-phantom"
    assert response["model"]["class_table_sha256"] == meta["table_sha256"]
    assert _health(segmentation_service.target) == health_pb2.HealthCheckResponse.SERVING


def test_refusals_have_clear_status_codes(case, segmentation_service):
    phantom, _ = case
    target = segmentation_service.target

    code, details = _call(target, segment_requests(phantom.ct, classes=[vocab.COLON]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "Colon" in details

    code, details = _call(target, segment_requests(phantom.ct, prompt="segment the brain tumour"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "brain" in details

    code, details = _call(target, segment_requests(phantom.ct, classes=[40]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "40" in details

    code, details = _call(target, segment_requests(phantom.ct, classes=[vocab.LIVER], overlap=0.95))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "overlap" in details

    requests = list(segment_requests(phantom.ct, classes=[vocab.LIVER], fast=True))
    chunk = next(r for r in requests if r.WhichOneof("item") == "chunk")
    chunk.chunk.data = bytes([chunk.chunk.data[0] ^ 1]) + chunk.chunk.data[1:]
    code, details = _call(target, requests)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "SHA-256" in details

    code, details = _call(target, [r for r in segment_requests(phantom.ct, classes=[vocab.LIVER])
                                   if r.WhichOneof("item") != "options"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "SegmentOptions" in details
    assert _health(target) == health_pb2.HealthCheckResponse.SERVING


def test_killing_triton_mid_request_is_unavailable_and_a_restart_restores_service(
        case, reference, text_service, tmp_path):
    """A Triton of its own (the shared one stays up for the other tests), SIGKILLed mid-request."""
    from radmesh.triton.launcher import TritonProcess

    phantom, _ = case
    ports = dict(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    triton = TritonProcess(**ports, threads=1, log_path=tmp_path / "triton-1.log")
    triton.start()
    svc = start_service("segmentation", tmp_path, "--triton-url", triton.grpc_url, "--text-url",
                        text_service.target, "--shared-memory", "on")
    try:
        inference_started = threading.Event()
        outcome: dict = {}

        def progress(stage: str, done: int, total: int, _message: str) -> None:
            if stage == "inference":
                inference_started.set()

        def call() -> None:
            try:
                outcome["result"] = segment_remote(svc.target, phantom.ct, classes=CLASSES, fast=True,
                                                   progress=progress, timeout_s=300)
            except Exception as ex:  # noqa: BLE001 - inspected below
                outcome["error"] = ex

        worker = threading.Thread(target=call)
        worker.start()
        assert inference_started.wait(300), "inference never started"
        triton.kill()
        worker.join(300)
        assert not worker.is_alive()
        error = outcome.get("error")
        from radmesh.common.errors import UnavailableError

        # UNAVAILABLE (not DEADLINE_EXCEEDED): the failure came back within the 300 s deadline
        assert isinstance(error, UnavailableError), outcome
        assert "Triton" in str(error), str(error)
        print(f"Triton killed mid-request: {error}")
        assert _health(svc.target) == health_pb2.HealthCheckResponse.SERVING

        # still down: the next request is refused the same way, the service stays up
        with pytest.raises(UnavailableError, match="Triton"):
            segment_remote(svc.target, phantom.ct, classes=CLASSES, fast=True, timeout_s=120)
        assert svc.proc.poll() is None

        # a new Triton on the same ports: the service reconnects and re-registers its regions
        triton = TritonProcess(**ports, threads=1, log_path=tmp_path / "triton-2.log")
        triton.start()
        labels, summary = segment_remote(svc.target, phantom.ct, classes=CLASSES, fast=True, timeout_s=300)
        ref_labels, _, _ = reference
        assert np.array_equal(labels.array, ref_labels.array)
        assert summary["intent"] is None                             # class indices: nothing was parsed
    finally:
        assert svc.stop() == 0
        triton.stop()
    log = svc.log()
    assert "triton connection reset" in log


def test_embedded_mode_needs_no_triton(case, reference, text_service, tmp_path):
    phantom, _ = case
    closed = f"127.0.0.1:{free_port()}"  # nothing listens here: Triton must not be used
    svc = start_service("segmentation", tmp_path, "--embedded", "--triton-url", closed,
                        "--text-url", text_service.target)
    try:
        labels, summary = segment_remote(svc.target, phantom.ct, prompt=PROMPT, fast=True, timeout_s=600)
    finally:
        assert svc.stop() == 0
    ref_labels, ref_summary, _ = reference
    assert np.array_equal(labels.array, ref_labels.array)
    assert [c["voxel_count"] for c in summary["classes"]] == [c["voxel_count"] for c in ref_summary["classes"]]


def test_cli_server_writes_what_the_in_process_command_writes(case, reference, segmentation_service, tmp_path):
    _, paths = case
    ref_labels, ref_summary, _ = reference
    out = tmp_path / "served"
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "segment", "--ct", str(paths["ct"]), "--prompt", PROMPT,
                        "--fast", "--out", str(out), "--server", segmentation_service.target, "--quiet"],
                       capture_output=True, text=True, timeout=600, env={**os.environ})
    assert r.returncode == 0, r.stderr
    labels = read_volume(out / "labels.nii.gz")
    assert labels.geometry.matches(ref_labels.geometry)
    assert np.array_equal(labels.array, ref_labels.array)
    served = json.loads((out / "segmentation.json").read_text())
    assert set(served) == set(ref_summary)
    assert served["classes"] == ref_summary["classes"] and served["intent"] == ref_summary["intent"]
    assert served["windows"] == ref_summary["windows"] and served["spacing_mm"] == ref_summary["spacing_mm"]
    assert served["model"]["model_version"] == ref_summary["model"]["model_version"]
    assert served["model"]["postprocess_calibration"] == ref_summary["model"]["postprocess_calibration"] != ""

    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "segment", "--ct", str(paths["ct"]), "--classes", "colon",
                        "--out", str(tmp_path / "x"), "--server", segmentation_service.target],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3 and "Colon" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not (tmp_path / "x" / "labels.nii.gz").exists()


def test_triton_runner_shared_memory_and_grpc_agree_with_onnx_runtime(triton_server):
    from radmesh.common.errors import FailedPreconditionError
    from radmesh.model.onnx_runner import OnnxRunner
    from radmesh.model.pipeline import class_embeddings, class_table_from_meta
    from radmesh.model.runtime import load, onnx_for
    from radmesh.segmentation.triton_runner import TritonRunner

    _, meta = load()
    table = class_embeddings(CLASSES, class_table_from_meta(meta))
    windows = np.random.default_rng(0).random((2, 1, 96, 96, 96), dtype=np.float32)
    expected = OnnxRunner(onnx_for()[0])(windows, table)
    for shm in (True, False):
        with TritonRunner(triton_server.grpc_url, shared_memory=shm, timeout_s=120) as runner:
            assert runner.embed_dim == table.shape[1] and runner.max_batch_size == 8
            np.testing.assert_array_equal(runner(windows, table), expected)
            np.testing.assert_array_equal(runner(windows[:1], table[:1]), expected[:1, :1])  # a slot reused
            with pytest.raises(FailedPreconditionError, match="512"):
                runner(windows[:1], np.zeros((1, 512), np.float32))
            keys = [r.key.lstrip("/") for s in runner._slots for r in s.regions.values()]
            assert bool(keys) == shm and all(Path("/dev/shm", k).exists() for k in keys)
        assert not any(Path("/dev/shm", k).exists() for k in keys)  # close() destroyed the regions


def test_unset_options_mean_server_defaults_and_zero_means_zero():
    from radmesh.common.volume import Geometry, Volume
    from radmesh.segmentation.server import options_from_proto

    ct = Volume(np.zeros((4, 4, 4), np.int16), Geometry((4, 4, 4)))
    sent = next(segment_requests(ct, classes=[vocab.LIVER])).options
    assert not sent.HasField("overlap") and not sent.HasField("min_lesion_mm3")
    plain = options_from_proto(sent)
    assert plain.overlap is None and plain.min_lesion_mm3 is None       # the pipeline's defaults
    zero = next(segment_requests(ct, classes=[vocab.LIVER], overlap=0.0, min_lesion_mm3=0.0)).options
    assert zero.HasField("overlap") and zero.HasField("min_lesion_mm3")
    plain = options_from_proto(zero)
    assert plain.overlap == 0.0 and plain.min_lesion_mm3 == 0.0          # as `radmesh segment --overlap 0` in-process
