"""gRPC adapter of the segmentation core: SegmentationService.Segment and ListClasses.

``radmesh serve segmentation`` (port 50053, metrics 9103) with its own flags, each also
a ``RADMESH_*`` variable: ``--triton-url`` (Triton's gRPC HOST:PORT), ``--triton-model``,
``--shared-memory auto|on|off`` (auto: on when Triton is on loopback), ``--text-url``
(the text service, for Parse and Encode), ``--embedded`` (run the model in-process with
ONNX Runtime instead of Triton; never a silent fallback) and ``--weights`` (the weights
whose meta — validated classes, encoder, class-table hash — describes the served model).

Segment streams Progress events while the pipeline runs in a worker thread: the RPC
thread relays them, watches the deadline and the client, and cancels the worker (its
progress callback raises) when either is gone. Triton being down is UNAVAILABLE for that
request only: health stays SERVING and the next request reconnects.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.common.config import ServeConfig
from radmesh.common.errors import InvalidInputError
from radmesh.common.intent_wire import parse_to_proto
from radmesh.common.server import ServiceSpec, time_budget_s
from radmesh.common.transport import VolumeAssembler, encode_volume, iter_chunks
from radmesh.segmentation.core import (DEFAULT_TEXT_URL, DEFAULT_TRITON_URL, ProgressEvent, SegmentOptions,
                                       Segmenter, make_runner)
from radmesh.segmentation.triton_runner import DEFAULT_MODEL, DeadlineExceededError
from radmesh.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc

log = logging.getLogger("radmesh.segmentation")

SERVICE_NAME = segmentation_pb2.DESCRIPTOR.services_by_name["SegmentationService"].full_name
_LATERALITY = {vocab.Laterality.NONE: common_pb2.LATERALITY_UNSPECIFIED,
               vocab.Laterality.LEFT: common_pb2.LATERALITY_LEFT,
               vocab.Laterality.RIGHT: common_pb2.LATERALITY_RIGHT}
_POLL_S = 0.25  # how often the RPC thread looks at the deadline and the client while the worker runs


class RemoteText:
    """The text service at ``target`` as the core's TextService (Parse, Encode)."""

    def __init__(self, target: str):
        self.target = target

    def parse(self, prompt: str, timeout_s: float) -> dict[str, Any]:
        from radmesh.text.client import parse_remote

        return parse_remote(self.target, prompt, timeout_s=timeout_s)

    def encode_classes(self, class_indices: Sequence[int], backend: str,
                       timeout_s: float) -> tuple[np.ndarray, str, str]:
        from radmesh.text.client import encode_remote

        return encode_remote(self.target, class_indices=list(class_indices), backend=backend, timeout_s=timeout_s)


def stage_proto(stage: str) -> int:
    return common_pb2.Stage.Value(f"STAGE_{stage.upper()}")


def progress_event(stage: str, done: int = 0, total: int = 0, message: str = "") -> segmentation_pb2.SegmentEvent:
    return segmentation_pb2.SegmentEvent(progress=common_pb2.Progress(stage=stage_proto(stage), done=done,
                                                                      total=total, message=message))


def options_from_proto(p: segmentation_pb2.SegmentOptions) -> SegmentOptions:
    return SegmentOptions(targets=tuple(int(t.class_index) for t in p.targets), prompt=p.prompt, fast=p.fast,
                          overlap=float(p.overlap) if p.HasField("overlap") else None,
                          min_lesion_mm3=float(p.min_lesion_mm3) if p.HasField("min_lesion_mm3") else None)


def model_info_proto(segmenter: Segmenter) -> common_pb2.ModelInfo:
    m = segmenter.model
    return common_pb2.ModelInfo(model_id=m.model_id, model_version=m.model_version,
                                embedding_backend=m.embedding_backend, class_table_sha256=m.class_table_sha256,
                                postprocess_calibration=m.calibration.name)


def class_info_proto(index: int) -> common_pb2.ClassInfo:
    c = vocab.get(index)
    return common_pb2.ClassInfo(class_index=c.index, name=c.name, kind=c.kind.value,
                                laterality=_LATERALITY[c.laterality], host_class_indices=list(c.host),
                                synonyms=list(c.synonyms), subregions=list(c.subregions), validated=True)


class _Cancelled(Exception):
    """Raised in the worker's progress callback when the RPC is over (deadline, client gone)."""


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServiceServicer):
    def __init__(self, cfg: ServeConfig, segmenter: Segmenter):
        self.cfg = cfg
        self.segmenter = segmenter

    def ListClasses(self, request: segmentation_pb2.ListClassesRequest,
                    context: grpc.ServicerContext) -> segmentation_pb2.ListClassesResponse:
        return segmentation_pb2.ListClassesResponse(
            classes=[class_info_proto(c) for c in sorted(self.segmenter.model.validated_classes)],
            model=model_info_proto(self.segmenter))

    def Segment(self, request_iterator: Iterator[segmentation_pb2.SegmentRequest],
                context: grpc.ServicerContext) -> Iterator[segmentation_pb2.SegmentEvent]:
        end = time.monotonic() + time_budget_s(context, self.cfg)
        ct_asm = VolumeAssembler("CT", self.cfg.max_volume_mb << 20)
        options: SegmentOptions | None = None
        for n, request in enumerate(request_iterator):
            which = request.WhichOneof("item")
            if which == "options":
                if n != 0:
                    raise InvalidInputError("SegmentOptions must be the first message of the stream")
                options = options_from_proto(request.options)
                # refuse unknown or unvalidated classes before the upload, not after it
                self.segmenter.check_targets(options)
            elif options is None:
                raise InvalidInputError("the stream must start with SegmentOptions")
            elif which == "header":
                if request.header.modality and request.header.modality.upper() != "CT":
                    raise InvalidInputError(f"the volume's modality is {request.header.modality}; the model "
                                            f"segments CT")
                ct_asm.start(request.header)
                yield progress_event("receiving", 0, request.header.total_bytes, "CT upload")
            elif which == "chunk":
                ct_asm.add(request.chunk)
            else:
                raise InvalidInputError(f"message {n} of the stream is empty")
        if options is None:
            raise InvalidInputError("the stream carried no SegmentOptions")
        if not ct_asm.started:
            raise InvalidInputError("the stream carried no CT")
        if time.monotonic() > end:
            raise DeadlineExceededError("deadline exceeded during upload")
        ct = ct_asm.finish()
        total_bytes = int(ct_asm.header.total_bytes)
        yield progress_event("receiving", total_bytes, total_bytes, "CT received")

        outcome = yield from self._run(ct, options, end, context)
        if outcome is None:
            return  # the client went away; grpc reports CANCELLED

        header, payload = encode_volume(outcome.labels, compress=True)  # label maps are mostly 0: zlib ~50x
        yield progress_event("sending", 0, header.total_bytes, "label map")
        yield segmentation_pb2.SegmentEvent(label_header=header)
        for chunk in iter_chunks(payload):
            yield segmentation_pb2.SegmentEvent(label_chunk=chunk)
        yield segmentation_pb2.SegmentEvent(summary=segmentation_pb2.SegmentSummary(
            classes=[segmentation_pb2.ClassVoxelCount(class_index=c, name=vocab.get(c).name,
                                                      voxel_count=outcome.voxel_counts[c],
                                                      volume_ml=outcome.volumes_ml[c],
                                                      host_only=c in outcome.host_classes)
                     for c in outcome.class_indices],
            model=model_info_proto(self.segmenter),
            elapsed_s=outcome.elapsed_s,
            parse=parse_to_proto(outcome.intent) if outcome.intent is not None else None))
        log.info("segmented with %s", self.segmenter.model.runtime,
                 extra={"classes": len(outcome.class_indices), "total": outcome.windows,
                        "duration_s": round(outcome.elapsed_s, 3)})

    def _run(self, ct, options: SegmentOptions, end: float, context: grpc.ServicerContext):
        """Run the core in a worker thread, yielding its progress events; returns the outcome."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()
        result: dict[str, Any] = {}

        def progress(event: ProgressEvent) -> None:
            if stop.is_set():
                raise _Cancelled()
            events.put(event)

        def work() -> None:
            try:
                result["outcome"] = self.segmenter.segment(ct, options, progress=progress, end_monotonic=end)
            except BaseException as ex:  # noqa: BLE001 - handed to the RPC thread, which maps it
                result["error"] = ex
            finally:
                events.put(None)

        worker = threading.Thread(target=work, name="segment-worker", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    event = events.get(timeout=_POLL_S)
                except queue.Empty:
                    if time.monotonic() > end:
                        raise DeadlineExceededError("deadline exceeded during segmentation") from None
                    if not context.is_active():
                        return None  # client gone: grpc reports CANCELLED
                    continue
                if event is None:
                    break
                yield progress_event(event.stage, event.done, event.total, event.message)
        finally:
            stop.set()  # the worker stops at its next progress callback if it is still running
        error = result.get("error")
        if error is not None:
            if isinstance(error, _Cancelled):
                raise DeadlineExceededError("deadline exceeded during segmentation")
            raise error
        return result["outcome"]


def _register(server: grpc.Server, cfg: ServeConfig) -> None:
    o = cfg.options
    runner, runtime = make_runner(embedded=bool(o.get("embedded")), weights=o.get("weights") or None,
                                  triton_url=o.get("triton_url") or DEFAULT_TRITON_URL,
                                  triton_model=o.get("triton_model") or DEFAULT_MODEL,
                                  shared_memory=(o.get("shared_memory") or "auto").lower(),
                                  timeout_s=cfg.max_request_s)
    segmenter = Segmenter(runner, RemoteText(o.get("text_url") or DEFAULT_TEXT_URL), o.get("weights") or None,
                          runtime=runtime)
    check = getattr(runner, "check_ready", None)
    if check is not None:
        # Triton may start after this service: report, do not fail — requests get UNAVAILABLE until it is up
        try:
            cfg_t = check(5.0)
            log.info("triton ready: %s, E=%d, max batch %d", runtime, cfg_t.embed_dim, cfg_t.max_batch_size)
        except Exception as ex:  # noqa: BLE001
            log.warning("triton not ready yet (%s): %s", runtime, str(ex)[:300])
    segmentation_pb2_grpc.add_SegmentationServiceServicer_to_server(SegmentationServicer(cfg, segmenter), server)


SPEC = ServiceSpec(name="segmentation", full_names=(SERVICE_NAME,), register=_register)
