"""Calling a running segmentation service: ``radmesh segment --server HOST:PORT``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from radmesh.common.errors import InvalidInputError, UnavailableError
from radmesh.common.grpcclient import call_errors, channel
from radmesh.common.intent_wire import parse_from_proto
from radmesh.common.protojson import to_plain
from radmesh.common.transport import VolumeAssembler, encode_volume, iter_chunks
from radmesh.common.volume import Volume
from radmesh.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc

# (stage name in lower case — "receiving", "inference", ... —, done, total, message)
RemoteProgress = Callable[[str, int, int, str], None]


def segment_requests(ct: Volume, prompt: str | None = None, classes: Sequence[int] | None = None,
                     fast: bool = False, overlap: float | None = None,
                     min_lesion_mm3: float | None = None) -> Iterator[segmentation_pb2.SegmentRequest]:
    """The client stream: SegmentOptions, then the CT as a header and ≈1 MiB chunks.
    ``overlap`` and ``min_lesion_mm3`` are sent only when given (None: the server's defaults)."""
    options = segmentation_pb2.SegmentOptions(
        targets=[common_pb2.ClassRef(class_index=int(c)) for c in (classes or [])], prompt=prompt or "", fast=fast)
    if overlap is not None:
        options.overlap = float(overlap)
    if min_lesion_mm3 is not None:
        options.min_lesion_mm3 = float(min_lesion_mm3)
    yield segmentation_pb2.SegmentRequest(options=options)
    # header and chunks straight into SegmentRequests: wrapping VolumeParts would copy every chunk again
    header, payload = encode_volume(ct, modality="CT")
    yield segmentation_pb2.SegmentRequest(header=header)
    for chunk in iter_chunks(payload):
        yield segmentation_pb2.SegmentRequest(chunk=chunk)


def read_events(events: Iterator[segmentation_pb2.SegmentEvent], progress: RemoteProgress | None = None,
                max_bytes: int = 2 << 30) -> tuple[Volume, dict[str, Any], list[common_pb2.Progress]]:
    """The server stream → (label map, summary as a plain dict, progress events in arrival order).

    The summary's ``parse`` becomes ``intent``: the ``Intent.to_dict()`` the service
    segmented from, None when the request named class indices."""
    labels = VolumeAssembler("label map", max_bytes)
    summary = None
    seen: list[common_pb2.Progress] = []
    for event in events:
        which = event.WhichOneof("event")
        if which == "progress":
            seen.append(event.progress)
            if progress is not None:
                p = event.progress
                progress(common_pb2.Stage.Name(p.stage).removeprefix("STAGE_").lower(), p.done, p.total, p.message)
        elif which == "label_header":
            labels.start(event.label_header)
        elif which == "label_chunk":
            labels.add(event.label_chunk)
        elif which == "summary":
            summary = event.summary
    if summary is None or not labels.started:
        raise UnavailableError("the segmentation service ended the stream without a label map and summary")
    plain = to_plain(summary)
    del plain["parse"]
    plain["intent"] = parse_from_proto(summary.parse) if summary.HasField("parse") else None
    return labels.finish(), plain, seen


def segment_remote(address: str, ct: Volume, prompt: str | None = None, classes: Sequence[int] | None = None,
                   fast: bool = False, overlap: float | None = None, min_lesion_mm3: float | None = None,
                   progress: RemoteProgress | None = None, timeout_s: float = 900.0) -> tuple[Volume, dict[str, Any]]:
    """(label map on ``ct``'s grid, summary dict) from the segmentation service at ``address``.

    The summary has the proto's field names: ``classes`` (class_index, name, voxel_count,
    volume_ml), ``model`` (model_id, model_version, embedding_backend, class_table_sha256),
    ``elapsed_s`` (server side, upload excluded). ``progress(stage, done, total, message)``
    sees every Progress event; ``timeout_s`` is the deadline of the whole call.
    """
    if not prompt and not classes:
        raise InvalidInputError("give a prompt or classes")
    with channel(address) as ch, call_errors(address, "segmentation"):
        stub = segmentation_pb2_grpc.SegmentationServiceStub(ch)
        events = stub.Segment(segment_requests(ct, prompt, classes, fast, overlap, min_lesion_mm3),
                              timeout=timeout_s)
        labels, summary, _ = read_events(events, progress)
    ct.geometry.require_match(labels.geometry, what="the service's label map")
    return labels, summary


def list_classes_remote(address: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """ListClasses as a plain dict: ``classes`` (validated only) and ``model``."""
    with channel(address) as ch, call_errors(address, "segmentation"):
        response = segmentation_pb2_grpc.SegmentationServiceStub(ch).ListClasses(
            segmentation_pb2.ListClassesRequest(), timeout=timeout_s)
    return to_plain(response)


def segment_to_folder_remote(address: str, ct: Volume, out_dir: str | os.PathLike, prompt: str | None = None,
                             classes: Sequence[int] | None = None, fast: bool = False,
                             overlap: float | None = None, progress: Callable[[int, int], None] | None = None,
                             timeout_s: float = 900.0, min_lesion_mm3: float | None = None) -> dict[str, Any]:
    """What ``radmesh segment`` writes (labels.nii.gz, segmentation.json), computed by the service.

    ``progress(done, total)`` counts windows, as in-process. segmentation.json has the
    in-process keys; ``intent`` is the service's parse of the prompt (None for class
    indices), ``timings_s`` holds the server's ``total`` and ``model`` the served model's identity.
    """
    from radmesh.model.preprocess import FAST_SPACING_MM, MODEL_SPACING_MM
    from radmesh.model.runtime import classes_summary, write_segmentation

    windows = [0]

    def on_event(stage: str, done: int, total: int, message: str) -> None:
        if stage == "inference":
            windows[0] = total
            if progress is not None:
                progress(done, total)

    labels, summary = segment_remote(address, ct, prompt=prompt, classes=classes, fast=fast,
                                     overlap=overlap, min_lesion_mm3=min_lesion_mm3,
                                     progress=on_event, timeout_s=timeout_s)
    rows = summary["classes"]
    result = {
        "prompt": prompt, "intent": summary["intent"],
        "classes": classes_summary([r["class_index"] for r in rows],
                                   {r["class_index"]: r["voxel_count"] for r in rows},
                                   {r["class_index"]: r["volume_ml"] for r in rows},
                                   [r["class_index"] for r in rows if r.get("host_only")]),
        "model": {**summary["model"], "runtime": f"segmentation service at {address}"},
        "spacing_mm": FAST_SPACING_MM if fast else MODEL_SPACING_MM, "windows": windows[0],
        "timings_s": {"total": round(float(summary["elapsed_s"]), 3)},
    }
    write_segmentation(out_dir, labels, result)
    return result
