"""`radmesh serve text` as a real process: Parse and Encode over gRPC, every backend."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import start_service
from radmesh.text.client import encode_remote, parse_remote
from radmesh.text.encoders import get_encoder
from radmesh.text.parse import parse
from radmesh.v1 import text_pb2, text_pb2_grpc

SEEDS = [
    "segment the pancreatic tumor and measure it",
    "Please segment the tumor in the tail of the pancreas and then measure its size",
    "Segment pancreatic tumors, if any",
    "Take a look at these CT scans and mark the suspected tumor region",
    "Generate a report",
    "segment the brain tumor",
]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A randomly initialised open_clip ViT-B/32 text tower and a float16 class table, as files."""
    import open_clip

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    torch.save(model.state_dict(), d / "clip_vitb32_random.pt")
    torch.save(torch.randn(32, 512).half(), d / "txt_encoding.pth")
    return d / "clip_vitb32_random.pt", d / "txt_encoding.pth"


@pytest.fixture(scope="module")
def text_service(tmp_path_factory, weights):
    clip, table = weights
    svc = start_service("text", tmp_path_factory.mktemp("text"), "--clip-weights", str(clip),
                        "--class-table", str(table))
    yield svc
    assert svc.stop() == 0


def test_health_reflection_metrics(text_service):
    with grpc.insecure_channel(text_service.target) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="radmesh.v1.TextService"), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert "radmesh.v1.TextService" in ProtoReflectionDescriptorDatabase(ch).get_services()
    parse_remote(text_service.target, "segment the liver")
    with urllib.request.urlopen(f"http://127.0.0.1:{text_service.metrics_port}/metrics", timeout=5) as r:
        assert 'method="Parse"' in r.read().decode()


@pytest.mark.parametrize("prompt", SEEDS)
def test_parse_over_grpc_equals_in_process(text_service, prompt):
    assert parse_remote(text_service.target, prompt) == parse(prompt).to_dict()


def test_encode_backends_over_grpc(text_service, weights):
    emb, backend, encoder_id = encode_remote(text_service.target, ["kidney tumor", "renal mass"], [26])
    assert emb.shape == (3, 384) and backend == "minilm" and encoder_id.startswith("minilm:")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    local = get_encoder("minilm").encode(["kidney tumor", "renal mass"])
    np.testing.assert_allclose(emb[:2], local, atol=1e-5)

    clip, _ = weights
    emb, backend, encoder_id = encode_remote(text_service.target, class_indices=[1, 28], backend="clip")
    assert emb.shape == (2, 512) and backend == "clip"
    np.testing.assert_allclose(emb, get_encoder("clip", clip_weights=str(clip)).encode_classes([1, 28]), atol=1e-5)

    emb, backend, _ = encode_remote(text_service.target, class_indices=[1, 32], backend="table")
    table = torch.load(weights[1]).float().numpy()
    np.testing.assert_allclose(emb, table[[0, 31]], atol=1e-6)


@pytest.mark.parametrize("prompt, code, words", [
    ("", grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    ("a" * 1001, grpc.StatusCode.INVALID_ARGUMENT, "1000"),
])
def test_parse_bad_prompts(text_service, prompt, code, words):
    with grpc.insecure_channel(text_service.target) as ch:
        with pytest.raises(grpc.RpcError) as e:
            text_pb2_grpc.TextServiceStub(ch).Parse(text_pb2.ParseRequest(prompt=prompt), timeout=10)
    assert e.value.code() == code and words in e.value.details()


@pytest.mark.parametrize("request_, words", [
    (text_pb2.EncodeRequest(texts=["liver"], backend="bert"), "bert"),
    (text_pb2.EncodeRequest(class_indices=[40]), "40"),
    (text_pb2.EncodeRequest(texts=["liver"], backend="table"), "classes only"),
    (text_pb2.EncodeRequest(), "texts or class_indices"),
])
def test_encode_bad_requests(text_service, request_, words):
    with grpc.insecure_channel(text_service.target) as ch:
        with pytest.raises(grpc.RpcError) as e:
            text_pb2_grpc.TextServiceStub(ch).Encode(request_, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in e.value.details()


def test_cli_parse_and_encode(text_service, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "radmesh.cli", *args], capture_output=True, text=True,
                              timeout=300)

    r = run("parse", "segment the pancreatic tumor and measure it", "--json")
    assert r.returncode == 0, r.stderr
    assert '"class_index": 28' in r.stdout and '"segment"' in r.stdout
    r = run("parse", "Please segment the tumor in the tail of the pancreas", "--server", text_service.target)
    assert r.returncode == 0 and "Pancreas Tumor (tail)" in r.stdout
    r = run("parse", "segment the heart")
    assert r.returncode == 0 and "not supported" in r.stdout
    r = run("parse", "")
    assert r.returncode == 2 and r.stderr.strip().startswith("radmesh: error:") and "empty" in r.stderr
    out = tmp_path / "e.npy"
    r = run("encode", "--classes", "1,28", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (2, 384)
    r = run("encode", "--backend", "clip", "--classes", "1")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "weights" in r.stderr


@pytest.mark.parametrize("prompt", ["measure the left kidney cyst and the liver",
                                    "is there a lung nodule in the right upper lobe?",
                                    "segment the spleen tumour if any"])
def test_a_parse_survives_the_wire_unchanged(prompt):
    from radmesh.common.intent_wire import intent_from_proto, intent_to_proto, parse_from_proto, parse_to_proto

    d = parse(prompt).to_dict()
    assert parse_from_proto(parse_to_proto(d)) == d
    assert intent_from_proto(intent_to_proto(d)) == {k: v for k, v in d.items() if k != "matched_phrases"}
