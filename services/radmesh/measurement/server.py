"""gRPC adapter of the measurement core: MeasurementService.Measure."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from radmesh.common.config import ServeConfig
from radmesh.common.errors import InvalidInputError
from radmesh.common.protojson import from_plain
from radmesh.common.server import Deadline, ServiceSpec
from radmesh.common.transport import VolumeAssembler
from radmesh.measurement.core import DEFAULT_MIN_LESION_MM3, measure
from radmesh.v1 import measurement_pb2, measurement_pb2_grpc

SERVICE_NAME = measurement_pb2.DESCRIPTOR.services_by_name["MeasurementService"].full_name


class MeasurementServicer(measurement_pb2_grpc.MeasurementServiceServicer):
    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg

    def Measure(self, request_iterator: Iterator[measurement_pb2.MeasureRequest],
                context: grpc.ServicerContext) -> measurement_pb2.MeasureResponse:
        deadline = Deadline(context, self.cfg)
        max_bytes = self.cfg.max_volume_mb << 20
        ct, labels = VolumeAssembler("CT", max_bytes), VolumeAssembler("label map", max_bytes)
        options = measurement_pb2.MeasureOptions()
        for n, request in enumerate(request_iterator):
            which = request.WhichOneof("item")
            if which == "options":
                if n != 0:
                    raise InvalidInputError("MeasureOptions must be the first message of the stream")
                options = request.options
            elif which == "ct":
                ct.add_part(request.ct)
            elif which == "labels":
                labels.add_part(request.labels)
            else:
                raise InvalidInputError(f"message {n} of the stream is empty")
        deadline.check("upload")
        if not ct.started:
            raise InvalidInputError("the stream carried no CT")
        if not labels.started:
            raise InvalidInputError("the stream carried no label map")
        ct_volume, label_volume = ct.finish(), labels.finish()
        result = measure(
            ct_volume, label_volume,
            classes=list(options.class_indices) or None,
            min_lesion_mm3=options.min_lesion_mm3 if options.HasField("min_lesion_mm3") else DEFAULT_MIN_LESION_MM3,
        )
        deadline.check("measurement")
        return from_plain(result.to_dict(), measurement_pb2.MeasureResponse())


def _register(server: grpc.Server, cfg: ServeConfig) -> None:
    measurement_pb2_grpc.add_MeasurementServiceServicer_to_server(MeasurementServicer(cfg), server)


SPEC = ServiceSpec(name="measurement", full_names=(SERVICE_NAME,), register=_register)
