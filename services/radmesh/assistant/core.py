"""The assistant's core: one question about a session's study in, a stream of events out.

``Assistant(mesh, sessions).ask(question, receive)`` is a generator of :class:`Step`,
:class:`LabelMap`, :class:`File` and, last, :class:`Reply` events. The plan follows the
parse (:func:`radmesh.assistant.conversation.plan_turn`) and calls only what it needs:

1. ``parsing`` — the text service's Parse (the first event is sent before it, at once);
2. ``receiving`` — the CT, when the client sent one (``receive`` reads it); the session keeps
   it, keyed by the SHA-256 of its payload, so follow-ups upload nothing;
3. ``inference`` — the segmentation service, once per study: it segments every class the
   model is validated on in one request (heads are cheap beside the backbone: 16 classes
   cost ≈ 1.15× two on the sample study), so "and the liver?" needs no second segmentation;
   later turns say the stage was SKIPPED;
4. ``measuring`` — the measurement service, for the classes the turn asks about that were
   not measured before (only when the actions need numbers, or key images are wanted);
5. ``reporting`` — the report service, when the turn asks for a report or DICOM SEG/SR;
6. ``rendering`` — key images of each lesion found (:mod:`radmesh.report.figures`);
7. ``sending`` — the label map of the turn's structures, the files, then the reply.

A service that fails ends the stream with its error, prefixed by the step ("segmenting:
segmentation service at ... is unavailable"), after a FAILED step event. Refusals and
questions back are replies, not errors.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import FailedPreconditionError, RadmeshError, UnavailableError
from radmesh.common.volume import Volume
from radmesh.assistant import reply as reply_mod
from radmesh.assistant.conversation import TurnPlan, plan_turn, target_name
from radmesh.assistant.mesh import Mesh
from radmesh.assistant.sessions import Session, SessionStore, Study, TurnRecord

log = logging.getLogger("radmesh.assistant")

RUNNING, DONE, FAILED, SKIPPED = "running", "done", "failed", "skipped"
MODEL_TTL_S = 30.0  # how long the segmentation model's identity is taken as known
MAX_FIGURE_LESIONS = 6  # key images for at most this many lesions per answer (largest first)
_MB = 1 << 20


# ---- events ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """A stage of the plan started, advanced or ended. ``stage``: a Stage name in lower case."""

    stage: str
    state: str
    message: str
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class LabelMap:
    labels: Volume  # uint8, the CT's grid: the structures this answer is about


@dataclass(frozen=True)
class File:
    name: str
    data: bytes
    media_type: str


@dataclass(frozen=True)
class Reply:
    answer: dict[str, Any]  # the Answer message's fields (see assistant.proto)


Event = Step | LabelMap | File | Reply


@dataclass(frozen=True)
class Incoming:
    """A CT the client sent with the question."""

    ct: Volume
    handle: str  # SHA-256 of its wire payload
    size_bytes: int


@dataclass(frozen=True)
class Question:
    """One Ask, plain: what the proto's AskOptions carries."""

    prompt: str
    session_id: str = ""
    study_handle: str = ""
    formats: tuple[str, ...] = ()  # of radmesh.report.artifacts.FORMATS
    fast: bool = False
    figures: bool = False
    study: dict[str, Any] = field(default_factory=dict)  # StudyMetadata fields


# ``receive()`` is a generator: it yields Step events while it reads the CT the client sent
# and returns it (None when the client sent none).
Receiver = Callable[[], Generator[Step, None, "Incoming | None"]]


def no_upload() -> Generator[Step, None, None]:
    """The receiver of a question sent without a CT."""
    return None
    yield  # pragma: no cover - makes this a generator


class Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def step(self, stage: str, state: str, message: str, done: int = 0, total: int = 0) -> Step:
        return Step(stage, state, message, done, total, round(time.perf_counter() - self.t0, 3))


def _in_thread(work: Callable[[Callable[..., None]], Any], to_step: Callable[..., Step | None]
               ) -> Generator[Step, None, Any]:
    """Run ``work(progress)`` in a thread, yielding ``to_step(*progress args)`` as it reports;
    returns its result or raises its error (so a long service call streams its progress)."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    result: dict[str, Any] = {}
    end = object()

    def run() -> None:
        try:
            result["value"] = work(lambda *args: events.put(to_step(*args)))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = e
        finally:
            events.put(end)

    threading.Thread(target=run, name="assistant-call", daemon=True).start()
    while (event := events.get()) is not end:
        if event is not None:
            yield event
    if "error" in result:
        raise result["error"]
    return result["value"]


def _value(call: Callable[..., Any], *args: Any) -> Generator[Step, None, Any]:
    """``call(*args)`` as a generator that yields nothing (for :func:`_guarded`)."""
    return call(*args)
    yield  # pragma: no cover - makes this a generator


def _guarded(clock: Clock, stage: str, title: str, work: Generator[Step, None, Any]) -> Generator[Step, None, Any]:
    """``work``'s events and result, its failure turned into a FAILED step and an error naming the step."""
    try:
        return (yield from work)
    except RadmeshError as e:
        yield clock.step(stage, FAILED, f"{title} failed: {e}")
        raise type(e)(f"{title}: {e}") from None


def _names(classes: Sequence[int]) -> str:
    from radmesh.assistant.conversation import join_words

    return join_words([vocab.get(c).name for c in classes])


class Assistant:
    """Plans each question over ``mesh`` and keeps the conversations in ``sessions``."""

    def __init__(self, mesh: Mesh, sessions: SessionStore):
        self.mesh = mesh
        self.sessions = sessions
        self._model: tuple[float, tuple[tuple[int, ...], dict[str, str]]] | None = None

    def model(self) -> tuple[tuple[int, ...], dict[str, str]]:
        """(validated classes, ModelInfo) of the segmentation service, asked again after MODEL_TTL_S;
        while it is unreachable the last answer stands (a refusal needs no segmentation), and
        with none yet the error propagates."""
        now = time.monotonic()
        if self._model is not None and now - self._model[0] < MODEL_TTL_S:
            return self._model[1]
        try:
            value = self.mesh.model()
        except UnavailableError:
            if self._model is None:
                raise
            return self._model[1]
        self._model = (now, value)
        return value

    # ---- the request ------------------------------------------------------------------------
    def ask(self, q: Question, receive: Receiver = no_upload,
            check: Callable[[str], None] | None = None) -> Iterator[Event]:
        """Answer ``q``; ``check(stage)`` is called between stages (the server's deadline and
        cancellation check)."""
        clock = Clock()
        check = check or (lambda stage: None)
        yield clock.step("parsing", RUNNING, "parsing the question")
        intent = yield from _guarded(clock, "parsing", "understanding the question", _value(self.mesh.parse, q.prompt))
        understood = ", ".join(target_name(t)[4:] for t in intent.get("targets") or []) or "no structure named"
        yield clock.step("parsing", DONE, f"understood: {understood}"
                         + (f"; {', '.join(intent['actions'])}" if intent.get("actions") else ""))
        check("parsing")

        incoming = yield from receive()
        check("receiving")
        session = self.sessions.get(q.session_id) if q.session_id else None
        if session is None:
            if q.session_id and incoming is None:
                raise FailedPreconditionError(f"session {q.session_id} is unknown or expired; send the study again")
            session = self.sessions.create()
        if not session.lock.acquire(blocking=False):
            raise FailedPreconditionError("another question is still being answered in this session; wait for it")
        try:
            yield from self._answer(q, intent, incoming, session, clock, check)
        finally:
            session.last_used = time.monotonic()
            session.lock.release()

    def _answer(self, q: Question, intent: dict[str, Any], incoming: Incoming | None, session: Session,
                clock: Clock, check: Callable[[str], None]) -> Iterator[Event]:
        uploaded = 0
        if incoming is not None:
            uploaded = incoming.size_bytes
            session.set_study(incoming.handle, incoming.ct, dict(q.study), incoming.size_bytes)
        elif q.study and session.study is not None:
            session.study.metadata = dict(q.study)
        study = session.study
        if q.study_handle and (study is None or study.handle != q.study_handle):
            raise FailedPreconditionError(f"this session does not hold study {q.study_handle[:12]}…; send its CT")

        validated, model = yield from _guarded(clock, "parsing", "checking the model", _value(self.model))
        plan = plan_turn(q.prompt, intent, session.turns, validated, model.get("model_version", "the model"))
        base = {"intent": intent, "session_id": session.id, "study_handle": study.handle if study else "",
                "model": model, "uploaded_bytes": uploaded}
        if plan.kind != "answer":
            session.turns.append(TurnRecord(q.prompt, plan.kind, [], plan.actions, choices=[
                {"class_index": c} for c in plan.suggestions]))
            log.info("answered", extra={"kind": plan.kind})
            yield Reply({**base, "kind": plan.kind, "text": plan.text, "suggestions": plan.suggestions,
                         "targets": [], "elapsed_s": round(time.perf_counter() - clock.t0, 3)})
            return
        if study is None:
            raise FailedPreconditionError("no study in this session yet: send a CT with the question")

        yield from self._segment(study, validated, q.fast, plan, clock)
        check("inference")
        keep = self._keep_classes(plan, study)
        wants_report = "report" in plan.actions or bool({"seg", "sr"} & set(q.formats))
        lesion_targets = [int(t["class_index"]) for t in plan.targets if vocab.get(int(t["class_index"])).is_lesion]
        structures: dict[int, dict[str, Any]] = {}
        if plan.needs_measurement or wants_report or (q.figures and lesion_targets):
            to_measure = keep if wants_report else [c for c in keep if c in self._asked(plan)]
            structures = yield from self._measure(study, to_measure, clock)
            check("measuring")

        files: dict[str, bytes] = {}
        report = None
        if wants_report:
            report, files = yield from self._report(study, plan, intent, keep, model, validated, q.formats, clock)
            check("reporting")
        if q.figures and lesion_targets:
            files.update((yield from self._figures(study, plan, structures, clock)))

        counts = {c: (n, n * study.ct.geometry.voxel_volume_mm3 / 1000.0) for c, n in study.counts.items()}
        image = study.image_number
        text = reply_mod.compose(plan, intent, {c: s for c, s in structures.items() if c in self._asked(plan)},
                                 counts, image, report_drafted=report is not None, edges=study.edges)

        labels = self._answer_labels(study, keep)
        if "nifti" in q.formats:
            from radmesh.report.artifacts import nifti_bytes

            files["labels.nii.gz"] = nifti_bytes(labels)
        yield clock.step("sending", RUNNING, f"sending the label map and {len(files)} file(s)")
        yield LabelMap(labels)
        from radmesh.report.artifacts import media_type

        for name, data in files.items():
            yield File(name, data, media_type(name))
        session.turns.append(TurnRecord(q.prompt, "answer", plan.targets + plan.compare_with, plan.actions))
        findings = None
        if structures:
            findings = {"structures": [structures[c] for c in sorted(structures)], "grid": study.grid,
                        "min_lesion_mm3": study.min_lesion_mm3}
        answer = {
            **base, "kind": "answer", "text": text, "targets": plan.targets + plan.compare_with,
            "segmented": [{"class_index": c, "name": vocab.get(c).name, "voxel_count": counts[c][0],
                           "volume_ml": counts[c][1], "host_only": c not in self._asked(plan)} for c in keep],
            "findings": findings, "report": report, "model": study.model or model,
            "artifacts": [{"name": n, "media_type": media_type(n), "size_bytes": len(d)} for n, d in files.items()],
            "elapsed_s": round(time.perf_counter() - clock.t0, 3),
        }
        yield clock.step("sending", DONE, "answer sent")
        log.info("answered", extra={"kind": "answer", "classes": len(keep), "bytes": uploaded,
                                    "duration_s": answer["elapsed_s"]})
        yield Reply(answer)

    # ---- stages ---------------------------------------------------------------------------
    @staticmethod
    def _asked(plan: TurnPlan) -> set[int]:
        return {int(t["class_index"]) for t in plan.targets + plan.compare_with}

    @staticmethod
    def _keep_classes(plan: TurnPlan, study: Study) -> list[int]:
        """The turn's classes and the host organs of its lesions (they place and confine them)."""
        keep = set(Assistant._asked(plan))
        for c in list(keep):
            keep.update(h for h in vocab.get(c).host if h in study.segmented)
        return sorted(keep)

    def _segment(self, study: Study, validated: Sequence[int], fast: bool, plan: TurnPlan,
                 clock: Clock) -> Generator[Step, None, None]:
        asked = [int(t["class_index"]) for t in plan.targets + plan.compare_with]
        if study.labels is not None and set(asked) <= set(study.segmented):
            yield clock.step("inference", SKIPPED, f"{_names(asked)} already segmented in this session")
            return
        classes = sorted(set(validated) | set(asked))
        others = len(classes) - len(set(asked))
        what = _names(asked) + (f" (and {others} other structures, for follow-up questions)" if others else "")
        yield clock.step("inference", RUNNING, f"segmenting {what}")
        lead = _names(asked)

        def to_step(stage: str, done: int, total: int, message: str) -> Step | None:
            if stage == "inference":
                return clock.step("inference", RUNNING, f"segmenting {lead}: window {done} / {total}", done, total)
            if stage in ("receiving", "sending"):
                return clock.step("inference", RUNNING, f"segmenting {lead}: {stage} the volume")
            if stage == "postprocessing":
                return clock.step("inference", RUNNING, f"segmenting {lead}: post-processing")
            return None

        t0 = time.perf_counter()
        labels, summary = yield from _guarded(clock, "inference", "segmenting", _in_thread(
            lambda progress: self.mesh.segment(study.ct, classes, fast, progress), to_step))
        study.store_labels(labels)
        study.segmented = tuple(int(r["class_index"]) for r in summary["classes"])
        study.fast = fast
        study.model = dict(summary.get("model") or {})
        study.measured.clear()
        yield clock.step("inference", DONE, f"segmented {len(study.segmented)} structures in "
                                            f"{time.perf_counter() - t0:.0f} s")

    def _measure(self, study: Study, classes: Sequence[int], clock: Clock) -> Generator[Step, None, dict]:
        missing = [c for c in classes if c not in study.measured]
        if not missing:
            yield clock.step("measuring", SKIPPED, f"{_names(classes)} already measured")
        else:
            yield clock.step("measuring", RUNNING, f"measuring {_names(missing)}")
            result = yield from _guarded(clock, "measuring", "measuring", _in_thread(
                lambda progress: self.mesh.measure(study.ct, study.labels, missing), lambda *a: None))
            for s in result["structures"]:
                study.measured[int(s["class_index"])] = s
            study.grid, study.min_lesion_mm3 = result["grid"], result["min_lesion_mm3"]
            lesions = sum(len(s["lesions"]) for s in result["structures"])
            yield clock.step("measuring", DONE, f"measured {len(missing)} structure(s), {lesions} lesion(s)")
        return {c: study.measured[c] for c in classes if c in study.measured}

    def _report(self, study: Study, plan: TurnPlan, intent: Mapping[str, Any], keep: Sequence[int],
                model: Mapping[str, Any], validated: Sequence[int], formats: Sequence[str], clock: Clock
                ) -> Generator[Step, None, tuple[dict[str, Any], dict[str, bytes]]]:
        from radmesh.report.artifacts import report_files

        yield clock.step("reporting", RUNNING, "drafting the report")
        findings = {"structures": [study.measured[c] for c in keep if c in study.measured], "grid": study.grid,
                    "min_lesion_mm3": study.min_lesion_mm3}
        report_intent = {"targets": plan.targets + plan.compare_with, "actions": plan.actions,
                         "if_any": bool(intent.get("if_any"))}
        labels = self._answer_labels(study, keep)
        wanted = [f for f in formats if f in ("seg", "sr")]
        report, files = yield from _guarded(clock, "reporting", "drafting the report", _in_thread(
            lambda progress: self.mesh.report(findings, report_intent, study.metadata, study.model or model,
                                              validated, labels, wanted), lambda *a: None))
        out = {**report_files(text=report["text"], json_text=report["json"]), **files}
        yield clock.step("reporting", DONE, f"report drafted ({', '.join(out)})")
        return report, out

    def _figures(self, study: Study, plan: TurnPlan, structures: Mapping[int, Mapping[str, Any]],
                 clock: Clock) -> Generator[Step, None, dict[str, bytes]]:
        from radmesh.report.core import lesion_matches
        from radmesh.report.figures import figure_file_names, lesion_figures

        chosen = []
        for t in plan.targets:
            c = int(t["class_index"])
            for lesion in (structures.get(c) or {}).get("lesions") or []:
                if lesion_matches(t, lesion) and (c, lesion["id"]) not in {(x[0], x[1]["id"]) for x in chosen}:
                    chosen.append((c, lesion))
        chosen = sorted(chosen, key=lambda x: -float(x[1]["volume_ml"]))[:MAX_FIGURE_LESIONS]
        if not chosen:
            yield clock.step("rendering", SKIPPED, "no lesion found to picture")
            return {}
        yield clock.step("rendering", RUNNING, f"drawing key images of {len(chosen)} lesion(s)")
        out: dict[str, bytes] = {}
        for c, lesion in chosen:
            images = lesion_figures(study.ct, study.labels, c, lesion,
                                    image_number=study.image_number(int(lesion["long_axis_slice"])))
            names = figure_file_names(c, int(lesion["id"]))
            out.update({names[plane]: png for plane, png in images.items()})
        yield clock.step("rendering", DONE, f"{len(out)} key images")
        return out

    @staticmethod
    def _answer_labels(study: Study, keep: Sequence[int]) -> Volume:
        assert study.labels is not None
        a = np.asarray(study.labels.array)
        return Volume(np.where(np.isin(a, np.asarray(keep, dtype=np.uint8)), a, 0).astype(np.uint8),
                      study.labels.geometry)

