"""The services the assistant plans calls to: over gRPC (:class:`RemoteMesh`) or in this
process (:class:`LocalMesh`, for ``radmesh ask --embedded``).

Both give the assistant's core the same five calls with the same plain-dict results, so
the conversation logic never knows where the work runs:

- ``parse(prompt)`` → ``Intent.to_dict()`` (the text service's Parse);
- ``model()`` → (validated class indices, ModelInfo fields) of the segmentation model;
- ``segment(ct, classes, fast, progress)`` → (uint8 label map on the CT's grid, summary
  ``{"classes": [ClassVoxelCount fields], "model": ModelInfo fields}``); ``progress(stage,
  done, total, message)`` sees the segmentation's stages (``inference``: windows done / total);
- ``measure(ct, labels, classes)`` → the MeasureResponse dict (``measure(...).to_dict()``);
- ``report(findings, intent, study, model, validated, labels, formats)`` → (``{"text", "json",
  "recommendations", "provenance"}``, {file name: bytes}).

Errors are radmesh errors (:mod:`radmesh.common.errors`); a service that cannot be reached
is UnavailableError naming it and its address.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from radmesh.common.volume import Volume

# (stage in lower case — "inference", ... —, done, total, message)
StageProgress = Callable[[str, int, int, str], None]

PARSE_TIMEOUT_S = 30.0
SEGMENT_TIMEOUT_S = 900.0
MEASURE_TIMEOUT_S = 300.0
REPORT_TIMEOUT_S = 300.0


class Mesh(Protocol):
    def parse(self, prompt: str) -> dict[str, Any]: ...

    def model(self) -> tuple[tuple[int, ...], dict[str, str]]: ...

    def segment(self, ct: Volume, classes: Sequence[int], fast: bool,
                progress: StageProgress | None = None) -> tuple[Volume, dict[str, Any]]: ...

    def measure(self, ct: Volume, labels: Volume, classes: Sequence[int]) -> dict[str, Any]: ...

    def report(self, findings: Mapping[str, Any], intent: Mapping[str, Any], study: Mapping[str, Any],
               model: Mapping[str, Any], validated: Sequence[int], labels: Volume,
               formats: Sequence[str]) -> tuple[dict[str, Any], dict[str, bytes]]: ...


def _report_dict(report: Any) -> dict[str, Any]:
    """A Report proto (or the core's Report) as the assistant's plain dict."""
    from radmesh.common.protojson import to_plain

    return to_plain(report)


class RemoteMesh:
    """The mesh's services at their gRPC addresses (``HOST:PORT`` each)."""

    def __init__(self, text: str, segmentation: str, measurement: str, report: str):
        self.addresses = {"text": text, "segmentation": segmentation, "measurement": measurement, "report": report}

    def parse(self, prompt: str) -> dict[str, Any]:
        from radmesh.text.client import parse_remote

        return parse_remote(self.addresses["text"], prompt, timeout_s=PARSE_TIMEOUT_S)

    def model(self) -> tuple[tuple[int, ...], dict[str, str]]:
        from radmesh.segmentation.client import list_classes_remote

        listed = list_classes_remote(self.addresses["segmentation"])
        return tuple(int(c["class_index"]) for c in listed["classes"]), dict(listed["model"] or {})

    def segment(self, ct: Volume, classes: Sequence[int], fast: bool,
                progress: StageProgress | None = None) -> tuple[Volume, dict[str, Any]]:
        from radmesh.segmentation.client import segment_remote

        return segment_remote(self.addresses["segmentation"], ct, classes=list(classes), fast=fast,
                              progress=progress, timeout_s=SEGMENT_TIMEOUT_S)

    def measure(self, ct: Volume, labels: Volume, classes: Sequence[int]) -> dict[str, Any]:
        from radmesh.measurement.client import measure_remote

        return measure_remote(self.addresses["measurement"], ct, labels, classes=list(classes),
                              timeout_s=MEASURE_TIMEOUT_S)

    def report(self, findings: Mapping[str, Any], intent: Mapping[str, Any], study: Mapping[str, Any],
               model: Mapping[str, Any], validated: Sequence[int], labels: Volume,
               formats: Sequence[str]) -> tuple[dict[str, Any], dict[str, bytes]]:
        from radmesh.report.client import generate_remote

        report, files = generate_remote(self.addresses["report"], findings, intent, study, model, list(validated),
                                        labels, formats, timeout_s=REPORT_TIMEOUT_S)
        return _report_dict(report), files


class LocalText:
    """Parse and Encode in this process: the segmentation core's TextService without a server."""

    def parse(self, prompt: str, timeout_s: float = PARSE_TIMEOUT_S) -> dict[str, Any]:
        from radmesh.text.parse import parse

        return parse(prompt).to_dict()

    def encode_classes(self, class_indices: Sequence[int], backend: str,
                       timeout_s: float = 60.0) -> tuple[np.ndarray, str, str]:
        from radmesh.text.encoders import get_encoder

        encoder = get_encoder(backend)
        return encoder.encode_classes(list(class_indices)), encoder.backend, encoder.encoder_id


class LocalMesh:
    """Every service's core in this process; the model runs in ONNX Runtime (``weights``: the
    shipped reference weights by default). The segmenter is built on first use."""

    def __init__(self, weights: str | None = None):
        self.weights = weights
        self._segmenter = None
        self._lock = threading.Lock()

    def _seg(self):
        with self._lock:
            if self._segmenter is None:
                from radmesh.segmentation.core import Segmenter, make_runner

                runner, runtime = make_runner(embedded=True, weights=self.weights)
                self._segmenter = Segmenter(runner, LocalText(), self.weights, runtime=runtime)
            return self._segmenter

    def parse(self, prompt: str) -> dict[str, Any]:
        return LocalText().parse(prompt)

    def model(self) -> tuple[tuple[int, ...], dict[str, str]]:
        m = self._seg().model
        return tuple(sorted(m.validated_classes)), {
            "model_id": m.model_id, "model_version": m.model_version, "embedding_backend": m.embedding_backend,
            "class_table_sha256": m.class_table_sha256, "postprocess_calibration": m.calibration.name}

    def segment(self, ct: Volume, classes: Sequence[int], fast: bool,
                progress: StageProgress | None = None) -> tuple[Volume, dict[str, Any]]:
        from radmesh.common import vocabulary as vocab
        from radmesh.segmentation.core import SegmentOptions

        def on_event(event: Any) -> None:
            if progress is not None:
                progress(event.stage, event.done, event.total, event.message)

        outcome = self._seg().segment(ct, SegmentOptions(targets=tuple(int(c) for c in classes), fast=fast),
                                      progress=on_event)
        rows = [{"class_index": c, "name": vocab.get(c).name, "voxel_count": outcome.voxel_counts[c],
                 "volume_ml": outcome.volumes_ml[c], "host_only": c in outcome.host_classes}
                for c in outcome.class_indices]
        return outcome.labels, {"classes": rows, "model": self.model()[1]}

    def measure(self, ct: Volume, labels: Volume, classes: Sequence[int]) -> dict[str, Any]:
        from radmesh.measurement.core import measure

        return measure(ct, labels, classes=list(classes)).to_dict()

    def report(self, findings: Mapping[str, Any], intent: Mapping[str, Any], study: Mapping[str, Any],
               model: Mapping[str, Any], validated: Sequence[int], labels: Volume,
               formats: Sequence[str]) -> tuple[dict[str, Any], dict[str, bytes]]:
        from radmesh.report.artifacts import build_artifacts, dicom_source
        from radmesh.report.convert import report_to_proto
        from radmesh.report.core import generate

        report = generate(findings, intent, study, model, validated_classes=list(validated), labels=labels)
        files = build_artifacts(formats, labels, findings, study, dicom_source(study, labels), model)
        return _report_dict(report_to_proto(report)), files

    def close(self) -> None:
        if self._segmenter is not None:
            self._segmenter.close()
