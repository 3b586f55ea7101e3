"""The report service's messages ↔ the plain dicts the report core takes.

The CLI hands the core ``Intent.to_dict()`` (actions and sides as words), study and
model dicts with the proto's field names, and format names ("seg", "sr", "nifti");
the client turns those into ``GenerateOptions`` and the server turns them back, so
both paths reach :func:`radmesh.report.core.generate` with equal inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from radmesh.common.errors import InvalidInputError
from radmesh.common.intent_wire import intent_to_proto
from radmesh.common.protojson import to_plain
from radmesh.report.artifacts import FORMATS, parse_formats
from radmesh.report.core import MODEL_FIELDS, STUDY_FIELDS, Report
from radmesh.v1 import common_pb2, measurement_pb2, report_pb2

_FORMAT_ENUM = {"seg": report_pb2.OUTPUT_FORMAT_DICOM_SEG, "sr": report_pb2.OUTPUT_FORMAT_DICOM_SR,
                "nifti": report_pb2.OUTPUT_FORMAT_NIFTI}
_FORMAT_NAME = {v: k for k, v in _FORMAT_ENUM.items()}


def study_to_proto(study: Mapping[str, Any] | None) -> report_pb2.StudyMetadata:
    study = dict(study or {})
    unknown = sorted(set(study) - set(STUDY_FIELDS))
    if unknown:
        raise InvalidInputError(f"study has unknown fields {unknown}; known: {', '.join(STUDY_FIELDS)}")
    return report_pb2.StudyMetadata(**{k: v for k, v in study.items() if v})


def study_from_proto(msg: report_pb2.StudyMetadata) -> dict[str, Any]:
    return to_plain(msg)


def model_to_proto(model: Mapping[str, Any] | None) -> common_pb2.ModelInfo:
    model = dict(model or {})
    unknown = sorted(set(model) - set(MODEL_FIELDS))
    if unknown:
        raise InvalidInputError(f"model has unknown fields {unknown}; known: {', '.join(MODEL_FIELDS)}")
    return common_pb2.ModelInfo(**{k: str(v) for k, v in model.items() if v})


def model_from_proto(msg: common_pb2.ModelInfo) -> dict[str, str]:
    return to_plain(msg)


def formats_to_proto(formats: Sequence[str]) -> list[int]:
    return [_FORMAT_ENUM[f] for f in parse_formats(list(formats))]


def formats_from_proto(values: Sequence[int]) -> tuple[str, ...]:
    bad = [v for v in values if v not in _FORMAT_NAME]
    if bad:
        raise InvalidInputError(f"unknown output format value(s) {bad}; known: "
                                + ", ".join(report_pb2.OutputFormat.Name(_FORMAT_ENUM[f]) for f in FORMATS))
    return parse_formats([_FORMAT_NAME[v] for v in values])


def options_to_proto(findings: Mapping[str, Any] | measurement_pb2.MeasureResponse, intent: Mapping[str, Any],
                     study: Mapping[str, Any] | None, model: Mapping[str, Any] | None,
                     validated_classes: Sequence[int] | None, formats: Sequence[str]) -> report_pb2.GenerateOptions:
    from radmesh.report.core import normalise_findings

    f = findings if isinstance(findings, measurement_pb2.MeasureResponse) else \
        measurement_pb2.MeasureResponse()
    if not isinstance(findings, measurement_pb2.MeasureResponse):
        from radmesh.common.protojson import from_plain

        from_plain(normalise_findings(findings), f)
    return report_pb2.GenerateOptions(
        findings=f, intent=intent_to_proto(intent), study=study_to_proto(study), model=model_to_proto(model),
        formats=formats_to_proto(formats), validated_class_indices=list(validated_classes or []))


def report_to_proto(report: Report) -> report_pb2.Report:
    return report_pb2.Report(
        text=report.text, json=report.json_text, provenance=report.provenance,
        recommendations=[report_pb2.Recommendation(text=r.text, source=r.source, class_index=r.class_index,
                                                   lesion_id=r.lesion_id) for r in report.recommendations])
