"""gRPC adapter of the assistant core: AssistantService.Ask, GetSession, EndSession.

``radmesh serve assistant`` (port 50051, metrics 9101) with its own flags, each also a
``RADMESH_*`` variable: ``--text-url``, ``--segmentation-url``, ``--measurement-url``,
``--report-url`` (the services it plans calls to), ``--session-idle-s`` (idle time after
which a session and its files are removed), ``--max-sessions`` and ``--session-dir``
(where sessions keep their files; default a temporary folder removed at exit).

Ask sends its first event as soon as the options arrive, before reading the CT, so a
client sees the plan start at once; the CT, when sent, is read with the same transport
rules as every service (size limit, in-order chunks, SHA-256).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator

import grpc
from prometheus_client import Counter, Gauge

from radmesh.common import vocabulary as vocab
from radmesh.common.config import ServeConfig
from radmesh.common.errors import InvalidInputError, NotFoundError
from radmesh.common.intent_wire import intent_to_proto
from radmesh.common.protojson import from_plain
from radmesh.common.server import Deadline, ServiceSpec
from radmesh.common.transport import VolumeAssembler, artifact_pieces, encode_volume, iter_chunks
from radmesh.assistant.core import DONE, RUNNING, Assistant, Clock, File, Incoming, LabelMap, Question, Reply, Step
from radmesh.assistant.mesh import RemoteMesh
from radmesh.assistant.sessions import DEFAULT_IDLE_S, DEFAULT_MAX_SESSIONS, SessionStore
from radmesh.report import convert
from radmesh.v1 import assistant_pb2, assistant_pb2_grpc, common_pb2

log = logging.getLogger("radmesh.assistant")

SERVICE_NAME = assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"].full_name
ANSWERS = Counter("radmesh_assistant_answers", "Answers by kind (answer, refusal, question)", ["kind"])
UPLOAD_BYTES = Counter("radmesh_assistant_upload_bytes", "CT bytes received by the assistant")
SESSIONS = Gauge("radmesh_assistant_sessions", "Sessions held (not yet expired)")
_PROGRESS_EVERY_BYTES = 8 << 20  # an upload progress event every 8 MiB
_KINDS = {"answer": assistant_pb2.ANSWER_KIND_ANSWER, "refusal": assistant_pb2.ANSWER_KIND_REFUSAL,
          "question": assistant_pb2.ANSWER_KIND_QUESTION}
_STATES = {"running": common_pb2.STAGE_STATE_RUNNING, "done": common_pb2.STAGE_STATE_DONE,
           "failed": common_pb2.STAGE_STATE_FAILED, "skipped": common_pb2.STAGE_STATE_SKIPPED}


def progress_proto(step: Step) -> common_pb2.Progress:
    return common_pb2.Progress(stage=common_pb2.Stage.Value(f"STAGE_{step.stage.upper()}"), done=step.done,
                               total=step.total, message=step.message, state=_STATES[step.state],
                               elapsed_s=step.elapsed_s)


def question_from_proto(o: assistant_pb2.AskOptions) -> Question:
    return Question(prompt=o.prompt, session_id=o.session_id, study_handle=o.study_handle,
                    formats=convert.formats_from_proto(o.formats), fast=o.fast, figures=o.figures,
                    study=convert.study_from_proto(o.study) if o.HasField("study") else {})


def answer_proto(a: dict) -> assistant_pb2.Answer:
    """The core's answer dict → Answer (the findings and report through their own protos)."""
    msg = assistant_pb2.Answer(
        intent=intent_to_proto(a["intent"]), text=a["text"], kind=_KINDS[a["kind"]], session_id=a["session_id"],
        study_handle=a["study_handle"], uploaded_bytes=int(a["uploaded_bytes"]), elapsed_s=float(a["elapsed_s"]),
        targets=intent_to_proto({"targets": a.get("targets") or []}).targets,
        suggestions=[common_pb2.ClassRef(class_index=c, name=vocab.get(c).name) for c in a.get("suggestions") or []],
        model=convert.model_to_proto(a.get("model")),
    )
    for row in a.get("segmented") or []:
        msg.segmented.add(**row)
    if a.get("findings"):
        from_plain(a["findings"], msg.findings)
    if a.get("report"):
        from_plain(a["report"], msg.report)
    for f in a.get("artifacts") or []:
        msg.artifacts.add(name=f["name"], media_type=f["media_type"], size_bytes=f["size_bytes"],
                          sha256=f.get("sha256", ""))
    return msg


class AssistantServicer(assistant_pb2_grpc.AssistantServiceServicer):
    def __init__(self, cfg: ServeConfig, assistant: Assistant):
        self.cfg = cfg
        self.assistant = assistant

    def Ask(self, request_iterator: Iterator[assistant_pb2.AskRequest],
            context: grpc.ServicerContext) -> Iterator[assistant_pb2.AskEvent]:
        deadline = Deadline(context, self.cfg)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("item") != "options":
            raise InvalidInputError("the stream must start with AskOptions")
        question = question_from_proto(first.options)

        def receive() -> Generator[Step, None, Incoming | None]:
            """Read the rest of the client stream: the CT (header + chunks), if any."""
            clock = Clock()
            asm = VolumeAssembler("CT", self.cfg.max_volume_mb << 20)
            next_report = 0
            for n, request in enumerate(request_iterator, start=1):
                which = request.WhichOneof("item")
                if which == "header":
                    if request.header.modality and request.header.modality.upper() != "CT":
                        raise InvalidInputError(f"the volume's modality is {request.header.modality}; radmesh "
                                                "answers questions about CT")
                    asm.start(request.header)
                    mb = request.header.total_bytes / (1 << 20)
                    yield clock.step("receiving", RUNNING, f"uploading {mb:.0f} MB", 0, request.header.total_bytes)
                elif which == "chunk":
                    asm.add(request.chunk)
                    if asm.received_bytes >= next_report:
                        next_report = asm.received_bytes + _PROGRESS_EVERY_BYTES
                        total = asm.header.total_bytes
                        yield clock.step("receiving", RUNNING, f"uploading {total / (1 << 20):.0f} MB",
                                         asm.received_bytes, total)
                elif which == "options":
                    raise InvalidInputError("AskOptions must be the first message of the stream, and only once")
                else:
                    raise InvalidInputError(f"message {n} of the stream is empty")
            if not asm.started:
                return None
            ct = asm.finish()
            size = int(asm.header.total_bytes)
            UPLOAD_BYTES.inc(size)
            yield clock.step("receiving", DONE, f"received {size / (1 << 20):.0f} MB", size, size)
            return Incoming(ct, asm.header.sha256, size)

        for event in self.assistant.ask(question, receive, check=deadline.check):
            if isinstance(event, Step):
                yield assistant_pb2.AskEvent(progress=progress_proto(event))
            elif isinstance(event, LabelMap):
                header, payload = encode_volume(event.labels, compress=True)  # mostly 0: zlib ~50x
                yield assistant_pb2.AskEvent(label_header=header)
                for chunk in iter_chunks(payload):
                    yield assistant_pb2.AskEvent(label_chunk=chunk)
            elif isinstance(event, File):
                for piece in artifact_pieces(event.name, event.data, event.media_type):
                    if isinstance(piece, common_pb2.Artifact):
                        yield assistant_pb2.AskEvent(artifact=piece)
                    else:
                        yield assistant_pb2.AskEvent(artifact_chunk=piece)
            elif isinstance(event, Reply):
                ANSWERS.labels(event.answer["kind"]).inc()
                SESSIONS.set(len(self.assistant.sessions))
                yield assistant_pb2.AskEvent(answer=answer_proto(event.answer))

    def GetSession(self, request: assistant_pb2.GetSessionRequest,
                   context: grpc.ServicerContext) -> assistant_pb2.SessionInfo:
        store = self.assistant.sessions
        s = store.peek(request.session_id) if request.session_id else None
        if s is None:
            raise NotFoundError("no such session (unknown or expired)")
        info = assistant_pb2.SessionInfo(session_id=s.id, study_handle=s.study.handle if s.study else "",
                                         expires_in_s=store.expires_in_s(s))
        if s.study is not None and s.study.labels is not None:
            info.segmented_class_indices.extend(s.study.segmented)
        for t in s.turns:
            info.turns.add(prompt=t.prompt, kind=_KINDS[t.kind],
                           targets=[common_pb2.ClassRef(class_index=int(x["class_index"]), name=x.get("name", ""),
                                                        subregion=x.get("subregion", "")) for x in t.targets])
        return info

    def EndSession(self, request: assistant_pb2.EndSessionRequest,
                   context: grpc.ServicerContext) -> assistant_pb2.EndSessionResponse:
        ended = self.assistant.sessions.end(request.session_id) if request.session_id else False
        SESSIONS.set(len(self.assistant.sessions))
        return assistant_pb2.EndSessionResponse(ended=ended)


def _register(server: grpc.Server, cfg: ServeConfig) -> Callable[[], None]:
    from radmesh.services import SERVICES

    o = cfg.options
    default = {name: f"127.0.0.1:{SERVICES[name].port}" for name in ("text", "segmentation", "measurement", "report")}
    mesh = RemoteMesh(**{name: o.get(f"{name}_url") or url for name, url in default.items()})
    store = SessionStore(o.get("session_dir") or None, idle_s=float(o.get("session_idle_s") or DEFAULT_IDLE_S),
                         max_sessions=int(o.get("max_sessions") or DEFAULT_MAX_SESSIONS))
    assistant_pb2_grpc.add_AssistantServiceServicer_to_server(AssistantServicer(cfg, Assistant(mesh, store)), server)
    return store.close  # run by the bootstrap once drained: every session's files go


SPEC = ServiceSpec(name="assistant", full_names=(SERVICE_NAME,), register=_register)
