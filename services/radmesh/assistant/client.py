"""Calling a running assistant: ``radmesh ask --server HOST:PORT`` and the chat UI.

``ask_stream(target, question, ct)`` is a generator: a :class:`~radmesh.assistant.core.Step`
for every progress event as it arrives, then one :class:`AskResult` (the answer as a
plain dict, the label map, the files). The answer dict has the core's keys, so the shell
renders an in-process and a served answer the same way.

Upload once: :func:`study_handle` gives the handle a CT will have; when the session
already holds it (:func:`get_session_remote`), send the question without the CT.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from radmesh.common.errors import NotFoundError, RadmeshError
from radmesh.common.grpcclient import call_errors, channel
from radmesh.common.intent_wire import intent_from_proto
from radmesh.common.protojson import to_plain
from radmesh.common.transport import ArtifactAssembler, VolumeAssembler, encode_volume, iter_chunks
from radmesh.common.volume import Volume
from radmesh.assistant.core import Question, Step
from radmesh.report import convert
from radmesh.v1 import assistant_pb2, assistant_pb2_grpc, common_pb2

DEFAULT_TIMEOUT_S = 1800.0


@dataclass
class AskResult:
    answer: dict[str, Any]
    labels: Volume | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)


def study_handle(ct: Volume) -> str:
    """The handle (SHA-256 of the wire payload) the assistant will give this CT."""
    return encode_volume(ct, modality="CT")[0].sha256


def step_from_proto(p: common_pb2.Progress) -> Step:
    return Step(stage=common_pb2.Stage.Name(p.stage).removeprefix("STAGE_").lower(),
                state=common_pb2.StageState.Name(p.state).removeprefix("STAGE_STATE_").lower(),
                message=p.message, done=int(p.done), total=int(p.total), elapsed_s=float(p.elapsed_s))


def answer_from_proto(a: assistant_pb2.Answer) -> dict[str, Any]:
    """An Answer as the core's answer dict (kinds and sides as words, absent messages None)."""
    plain = to_plain(a)
    plain["kind"] = assistant_pb2.AnswerKind.Name(a.kind).removeprefix("ANSWER_KIND_").lower()
    plain["intent"] = intent_from_proto(a.intent)
    plain["targets"] = intent_from_proto(common_pb2.Intent(targets=a.targets))["targets"]
    plain["suggestions"] = [s.class_index for s in a.suggestions]
    plain["model"] = convert.model_from_proto(a.model)
    return plain


def ask_requests(question: Question, ct: Volume | None) -> Iterator[assistant_pb2.AskRequest]:
    """The client stream: AskOptions, then the CT (header + ≈1 MiB chunks) when given."""
    options = assistant_pb2.AskOptions(prompt=question.prompt, session_id=question.session_id,
                                       study_handle=question.study_handle, fast=question.fast,
                                       figures=question.figures, formats=convert.formats_to_proto(question.formats))
    if question.study:
        options.study.CopyFrom(convert.study_to_proto(question.study))
    yield assistant_pb2.AskRequest(options=options)
    if ct is not None:
        header, payload = encode_volume(ct, modality="CT")
        yield assistant_pb2.AskRequest(header=header)
        for chunk in iter_chunks(payload):
            yield assistant_pb2.AskRequest(chunk=chunk)


def read_events(events: Iterator[assistant_pb2.AskEvent]) -> Iterator[Step | AskResult]:
    labels = VolumeAssembler("label map")
    files = ArtifactAssembler("assistant")
    steps: list[Step] = []
    for event in events:
        which = event.WhichOneof("event")
        if which == "progress":
            step = step_from_proto(event.progress)
            steps.append(step)
            yield step
        elif which == "label_header":
            labels.start(event.label_header)
        elif which == "label_chunk":
            labels.add(event.label_chunk)
        elif which == "artifact":
            files.add_artifact(event.artifact)
        elif which == "artifact_chunk":
            files.add_chunk(event.artifact_chunk)
        elif which == "answer":
            yield AskResult(answer_from_proto(event.answer), labels.finish() if labels.started else None,
                            files.finish(), steps)
            return
    raise RadmeshError("the assistant ended the stream without an answer")


def ask_stream(target: str, question: Question, ct: Volume | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Step | AskResult]:
    """Steps as they come, then the AskResult; radmesh errors for failed calls (the message names the step)."""
    with channel(target) as ch, call_errors(target, "assistant"):
        stub = assistant_pb2_grpc.AssistantServiceStub(ch)
        yield from read_events(stub.Ask(ask_requests(question, ct), timeout=timeout_s))


def ask_remote(target: str, question: Question, ct: Volume | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> AskResult:
    for item in ask_stream(target, question, ct, timeout_s):
        if isinstance(item, AskResult):
            return item
    raise RadmeshError("the assistant ended the stream without an answer")  # pragma: no cover


def get_session_remote(target: str, session_id: str, timeout_s: float = 10.0) -> dict[str, Any] | None:
    """SessionInfo as a dict, or None when the session is unknown or expired."""
    try:
        with channel(target) as ch, call_errors(target, "assistant"):
            stub = assistant_pb2_grpc.AssistantServiceStub(ch)
            return to_plain(stub.GetSession(assistant_pb2.GetSessionRequest(session_id=session_id), timeout=timeout_s))
    except NotFoundError:
        return None


def end_session_remote(target: str, session_id: str, timeout_s: float = 10.0) -> bool:
    with channel(target) as ch, call_errors(target, "assistant"):
        stub = assistant_pb2_grpc.AssistantServiceStub(ch)
        return stub.EndSession(assistant_pb2.EndSessionRequest(session_id=session_id), timeout=timeout_s).ended


def needs_upload(target: str, session_id: str, handle: str) -> bool:
    """Whether the CT with ``handle`` must be sent: False when the session already holds it."""
    if not session_id:
        return True
    info = get_session_remote(target, session_id)
    if info is None:
        return True
    return info["study_handle"] != handle


