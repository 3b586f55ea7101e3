"""gRPC adapter of the report core: ReportService.Generate.

Client stream: GenerateOptions, then (optionally) the label map. Server stream:
the Report, then each requested artifact — inline when it fits one ≈1 MiB
message, otherwise an empty Artifact (name, media type, size, SHA-256) followed
by its ArtifactChunks in order.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from radmesh.common.config import ServeConfig
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.intent_wire import intent_from_proto
from radmesh.common.server import Deadline, ServiceSpec
from radmesh.common.transport import CHUNK_BYTES, VolumeAssembler, artifact_pieces
from radmesh.common.volume import Volume
from radmesh.report import convert
from radmesh.report.artifacts import FILE_NAMES, build_artifacts, dicom_source, media_type
from radmesh.report.core import generate, label_array, normalise_findings
from radmesh.v1 import common_pb2, report_pb2, report_pb2_grpc

SERVICE_NAME = report_pb2.DESCRIPTOR.services_by_name["ReportService"].full_name


def artifact_messages(name: str, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[report_pb2.GenerateResponse]:
    """One artifact as GenerateResponse messages: inline if small, else a header and chunks."""
    for piece in artifact_pieces(name, data, media_type(name), chunk_bytes):
        if isinstance(piece, common_pb2.Artifact):
            yield report_pb2.GenerateResponse(artifact=piece)
        else:
            yield report_pb2.GenerateResponse(artifact_chunk=piece)


class ReportServicer(report_pb2_grpc.ReportServiceServicer):
    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg

    def Generate(self, request_iterator: Iterator[report_pb2.GenerateRequest],
                 context: grpc.ServicerContext) -> Iterator[report_pb2.GenerateResponse]:
        deadline = Deadline(context, self.cfg)
        labels = VolumeAssembler("label map", self.cfg.max_volume_mb << 20)
        options: report_pb2.GenerateOptions | None = None
        for n, request in enumerate(request_iterator):
            which = request.WhichOneof("item")
            if which == "options":
                if n != 0:
                    raise InvalidInputError("GenerateOptions must be the first message of the stream")
                options = request.options
            elif which == "labels":
                if options is None:
                    raise InvalidInputError("the label map arrived before GenerateOptions")
                labels.add_part(request.labels)
            else:
                raise InvalidInputError(f"message {n} of the stream is empty")
        deadline.check("upload")
        if options is None:
            raise InvalidInputError("the stream carried no GenerateOptions")
        formats = convert.formats_from_proto(options.formats)
        if formats and not labels.started:
            raise FailedPreconditionError(
                f"{', '.join(FILE_NAMES[f] for f in formats)} asked for without a label map; send the label map "
                "the findings were measured on after the options")
        lab = None
        if labels.started:
            received = labels.finish()
            lab = Volume(label_array(received), received.geometry)  # uint8 once, for the checks and the files
        study = convert.study_from_proto(options.study)
        model = convert.model_from_proto(options.model)
        findings = normalise_findings(options.findings)
        report = generate(findings, intent_from_proto(options.intent), study, model,
                          validated_classes=list(options.validated_class_indices) or None, labels=lab)
        deadline.check("report")
        files: dict[str, bytes] = {}
        if formats:
            files = build_artifacts(formats, lab, findings, study, dicom_source(study, lab), model)
            deadline.check("artifacts")
        yield report_pb2.GenerateResponse(report=convert.report_to_proto(report))
        for name, data in files.items():
            yield from artifact_messages(name, data)


def _register(server: grpc.Server, cfg: ServeConfig) -> None:
    report_pb2_grpc.add_ReportServiceServicer_to_server(ReportServicer(cfg), server)


SPEC = ServiceSpec(name="report", full_names=(SERVICE_NAME,), register=_register)
