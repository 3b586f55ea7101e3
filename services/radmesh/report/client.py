"""Calling a running report service: ``radmesh report ... --server HOST:PORT``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from radmesh.common.errors import InvalidInputError, RadmeshError
from radmesh.common.grpcclient import call_errors, channel
from radmesh.common.transport import ArtifactAssembler, volume_parts
from radmesh.common.volume import Volume
from radmesh.report.convert import options_to_proto
from radmesh.v1 import report_pb2, report_pb2_grpc


def generate_requests(options: report_pb2.GenerateOptions,
                      labels: Volume | None = None) -> Iterator[report_pb2.GenerateRequest]:
    """The client stream: the options, then the label map (zlib: label maps are mostly background)."""
    yield report_pb2.GenerateRequest(options=options)
    if labels is not None:
        for part in volume_parts(labels, compress=True):
            yield report_pb2.GenerateRequest(labels=part)


def read_responses(responses: Iterable[report_pb2.GenerateResponse]) -> tuple[report_pb2.Report, dict[str, bytes]]:
    """The server stream → (Report, {artifact name: content}), each artifact's size and SHA-256 verified."""
    report: report_pb2.Report | None = None
    files = ArtifactAssembler("report service")
    try:
        for n, response in enumerate(responses):
            which = response.WhichOneof("item")
            if which == "report":
                if n != 0:
                    raise RadmeshError("report service sent the Report after other messages")
                report = response.report
            elif which == "artifact":
                files.add_artifact(response.artifact)
            elif which == "artifact_chunk":
                files.add_chunk(response.artifact_chunk)
            else:
                raise RadmeshError(f"report service sent an empty message ({n})")
        if report is None:
            raise RadmeshError("report service ended the stream without a Report")
        return report, files.finish()
    except InvalidInputError as e:  # the service's fault, not the caller's input
        raise RadmeshError(str(e)) from None


def generate_remote(target: str, findings: Mapping[str, Any], intent: Mapping[str, Any],
                    study: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
                    validated_classes: Sequence[int] | None = None, labels: Volume | None = None,
                    formats: Sequence[str] = (),
                    timeout_s: float = 300.0) -> tuple[report_pb2.Report, dict[str, bytes]]:
    """(Report, artifacts) from the report service at ``target``; same inputs as ``core.generate``."""
    options = options_to_proto(findings, intent, study, model, validated_classes, formats)
    with channel(target) as ch, call_errors(target, "report"):
        stub = report_pb2_grpc.ReportServiceStub(ch)
        return read_responses(stub.Generate(generate_requests(options, labels), timeout=timeout_s))
