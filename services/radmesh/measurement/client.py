"""Calling a running measurement service: ``radmesh measure --server HOST:PORT``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from radmesh.common.grpcclient import call_errors, channel
from radmesh.common.protojson import to_plain
from radmesh.common.transport import volume_parts
from radmesh.common.volume import Volume
from radmesh.measurement.core import DEFAULT_MIN_LESION_MM3
from radmesh.v1 import measurement_pb2, measurement_pb2_grpc


def measure_requests(ct: Volume, labels: Volume, classes: Sequence[int] | None = None,
                     min_lesion_mm3: float | None = DEFAULT_MIN_LESION_MM3) -> Iterator[measurement_pb2.MeasureRequest]:
    """The client stream: MeasureOptions (``min_lesion_mm3`` None: the server's default), the CT, the label map."""
    options = measurement_pb2.MeasureOptions(class_indices=list(classes or []))
    if min_lesion_mm3 is not None:
        options.min_lesion_mm3 = float(min_lesion_mm3)
    yield measurement_pb2.MeasureRequest(options=options)
    for part in volume_parts(ct, modality="CT"):
        yield measurement_pb2.MeasureRequest(ct=part)
    # Label maps are mostly background: zlib shrinks them ~50x for a cheap CPU cost.
    for part in volume_parts(labels, compress=True):
        yield measurement_pb2.MeasureRequest(labels=part)


def measure_remote(target: str, ct: Volume, labels: Volume, classes: Sequence[int] | None = None,
                   min_lesion_mm3: float = DEFAULT_MIN_LESION_MM3, timeout_s: float = 300.0) -> dict[str, Any]:
    """Same dict as ``measure(...).to_dict()``, computed by the service at ``target``."""
    with channel(target) as ch, call_errors(target, "measurement"):
        stub = measurement_pb2_grpc.MeasurementServiceStub(ch)
        response = stub.Measure(measure_requests(ct, labels, classes, min_lesion_mm3), timeout=timeout_s)
    return to_plain(response)
