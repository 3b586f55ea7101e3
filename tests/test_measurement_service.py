"""`radmesh serve measurement` as a real process, called over gRPC on loopback."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import start_service
from radmesh.common.protojson import to_plain
from radmesh.common.transport import encode_volume, volume_parts
from radmesh.common.volume import Geometry, Volume
from radmesh.measurement.client import measure_requests
from radmesh.measurement.core import measure
from radmesh.v1 import common_pb2, measurement_pb2, measurement_pb2_grpc

SERVICE = "radmesh.v1.MeasurementService"


@pytest.fixture
def stub(measurement_service):
    with grpc.insecure_channel(measurement_service.target) as ch:
        yield measurement_pb2_grpc.MeasurementServiceStub(ch)


def _metrics(svc) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_health_and_reflection(measurement_service):
    with grpc.insecure_channel(measurement_service.target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", SERVICE):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        db = ProtoReflectionDescriptorDatabase(ch)
        assert SERVICE in db.get_services()
        method = db.FindFileContainingSymbol(SERVICE)
        assert method.name == "radmesh/v1/measurement.proto"


def test_measure_phantom_over_grpc_matches_in_process(stub, phantom_case, measurement_service):
    phantom, _ = phantom_case
    response = stub.Measure(measure_requests(phantom.ct, phantom.labels), timeout=120)
    remote = to_plain(response)
    local = measure(phantom.ct, phantom.labels).to_dict()
    assert remote == local
    lesion_classes = {s["class_index"] for s in remote["structures"] if s["lesions"]}
    assert {26, 27, 28, 30, 32} <= lesion_classes
    metrics = _metrics(measurement_service)
    assert 'radmesh_grpc_requests_total{code="OK",method="Measure",service="radmesh.v1.MeasurementService"}' in metrics
    assert "radmesh_grpc_request_duration_seconds_bucket" in metrics
    assert "radmesh_grpc_in_flight_requests" in metrics


def _call(stub, requests):
    with pytest.raises(grpc.RpcError) as e:
        stub.Measure(iter(list(requests)), timeout=60)
    return e.value.code(), e.value.details()


def _small():
    g = Geometry((20, 32, 32), (1.0, 1.0, 2.0))
    ct = Volume(np.full(g.shape_zyx, 40, np.int16), g)
    lab = np.zeros(g.shape_zyx, np.uint8)
    lab[5:10, 10:20, 10:20] = 6
    return ct, Volume(lab, g)


def test_unset_minimum_is_the_default_and_zero_reports_every_lesion(stub, measurement_service):
    ct, lab = _small()
    tiny = lab.array.copy()
    tiny[7, 14, 14:16] = 27                                        # a 4 mm³ liver lesion: under the 10 mm³ default
    lab = Volume(tiny, lab.geometry)
    default = to_plain(stub.Measure(measure_requests(ct, lab, min_lesion_mm3=None), timeout=60))
    zero = to_plain(stub.Measure(measure_requests(ct, lab, min_lesion_mm3=0.0), timeout=60))
    assert default == measure(ct, lab).to_dict()
    assert zero == measure(ct, lab, min_lesion_mm3=0.0).to_dict()   # as in-process: 0 is 0, not "the default"
    assert zero != default


def test_bad_inputs_get_clear_status_codes(stub, measurement_service):
    ct, labels = _small()
    other = Volume(labels.array[:, :, :30].copy(), Geometry((20, 32, 30), (1.0, 1.0, 2.0)))
    code, details = _call(stub, measure_requests(ct, other))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "grid" in details

    code, details = _call(stub, measure_requests(ct, labels, classes=[40]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "40" in details

    empty = Volume(np.zeros_like(labels.array), labels.geometry)
    code, details = _call(stub, measure_requests(ct, empty))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty" in details.lower()

    floats = Volume(labels.array.astype(np.float32) + 0.5, labels.geometry)
    code, details = _call(stub, measure_requests(ct, floats))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "integer" in details.lower()

    reqs = list(measure_requests(ct, labels))
    chunk = next(r for r in reqs if r.WhichOneof("item") == "ct" and r.ct.HasField("chunk"))
    chunk.ct.chunk.data = bytes([chunk.ct.chunk.data[0] ^ 1]) + chunk.ct.chunk.data[1:]
    code, details = _call(stub, reqs)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "SHA-256" in details

    only_ct = [r for r in measure_requests(ct, labels) if r.WhichOneof("item") != "labels"]
    code, details = _call(stub, only_ct)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "no label map" in details

    header, _ = encode_volume(ct)
    del header.geometry.shape_zyx[:]
    header.geometry.shape_zyx.extend([3000, 3000, 3000])
    header.total_bytes = 3000 ** 3 * 2
    code, details = _call(stub, [measurement_pb2.MeasureRequest(ct=common_pb2.VolumePart(header=header))])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in details

    assert 'code="INVALID_ARGUMENT"' in _metrics(measurement_service)


def test_logs_are_json_and_hold_no_identifiers(tmp_path):
    svc = start_service("measurement", tmp_path)
    try:
        ct, labels = _small()
        uid = "1.2.826.0.1.3680043.99999.424242"
        reqs = [measurement_pb2.MeasureRequest(options=measurement_pb2.MeasureOptions())]
        reqs += [measurement_pb2.MeasureRequest(ct=p) for p in volume_parts(ct, study_instance_uid=uid,
                                                                             series_instance_uid=uid + ".1")]
        reqs += [measurement_pb2.MeasureRequest(labels=p) for p in volume_parts(labels)]
        with grpc.insecure_channel(svc.target) as ch:
            measurement_pb2_grpc.MeasurementServiceStub(ch).Measure(iter(reqs), timeout=60)
    finally:
        assert svc.stop() == 0
    lines = [ln for ln in svc.log().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert any(r.get("method") == "Measure" and r.get("code") == "OK" for r in records)
    assert uid not in svc.log()


def test_sigterm_drains_in_flight_request(tmp_path):
    svc = start_service("measurement", tmp_path, "--drain-s", "20")
    ct, labels = _small()
    result: dict = {}

    def slow_requests():
        reqs = list(measure_requests(ct, labels))
        yield reqs[0]
        yield reqs[1]
        result["uploading"] = True
        time.sleep(2.0)  # the server receives SIGTERM while this upload is in flight
        yield from reqs[2:]

    def call():
        with grpc.insecure_channel(svc.target) as ch:
            try:
                result["response"] = measurement_pb2_grpc.MeasurementServiceStub(ch).Measure(slow_requests(),
                                                                                          timeout=60)
            except grpc.RpcError as e:
                result["error"] = e.code()

    t = threading.Thread(target=call)
    t.start()
    while "uploading" not in result:
        time.sleep(0.05)
    time.sleep(0.3)
    svc.proc.send_signal(15)
    t.join(60)
    assert "error" not in result, result.get("error")
    assert result["response"].structures[0].class_index == 6
    assert svc.proc.wait(30) == 0
    assert "draining" in svc.log()
