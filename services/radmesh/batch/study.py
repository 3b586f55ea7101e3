"""One study of a cohort: the question ``radmesh ask`` would answer, and the files ``--out`` would write.

:func:`answer_study` runs where Ray puts it (a worker process, maybe on another node). It
reads the CT, asks the assistant — in this process over a :class:`LocalMesh` (the path
``radmesh ask`` takes without ``--server``) or a running assistant at ``assistant_url`` —
and returns an :class:`Outcome` holding the files as bytes. It never raises for a study's
own problems (a corrupt file, a refusal): those are a failed outcome with the reason, so
one bad study cannot take the cohort down. The driver writes the files; a worker writes
nothing, so a worker killed halfway leaves nothing half-written.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any


from radmesh.batch.manifest import StudyRow
from radmesh.common.errors import DeadlineExceededError, RadmeshError, UnavailableError

DONE, FAILED, NOT_RUN = "done", "failed", "not_run"
# A mesh that restarts a pod or sheds load answers UNAVAILABLE for seconds; a deadline can
# be a busy Triton. Both are worth a second try; anything else is about the study itself.
TRANSIENT = (UnavailableError, DeadlineExceededError)
TRANSIENT_BACKOFF_S = (2.0, 8.0)  # waits before the 2nd and 3rd attempt


@dataclass(frozen=True)
class Settings:
    """What every study of a run shares (it travels to the workers)."""

    assistant_url: str | None = None  # None: every service in the worker process
    weights: str | None = None  # in-process only
    fast: bool = False
    formats: tuple[str, ...] = ()
    figures: bool = False
    timeout_s: float = 1800.0  # deadline of one remote Ask


@dataclass
class Outcome:
    study_id: str
    status: str  # DONE or FAILED (NOT_RUN is the driver's: interrupted before it ran)
    reason: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    answer: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    attempts: int = 1  # calls of the assistant, transient retries included
    host: str = ""


# One mesh per worker process and weights: Ray reuses a worker for many studies, and loading
# the model is most of a small study's time.
_LOCAL: dict[str | None, Any] = {}
_LOCAL_LOCK = threading.Lock()


def _local_mesh(weights: str | None):
    from radmesh.assistant.mesh import LocalMesh
    from radmesh.assistant.sessions import SessionStore

    with _LOCAL_LOCK:
        if weights not in _LOCAL:
            _LOCAL[weights] = (LocalMesh(weights), SessionStore())
        return _LOCAL[weights]


def _ask_once(row: StudyRow, settings: Settings, question: Any, ct: Any):
    if settings.assistant_url:
        from radmesh.assistant.client import ask_remote, end_session_remote

        result = ask_remote(settings.assistant_url, question, ct, timeout_s=settings.timeout_s)
        try:  # the answer is complete: free the assistant's copy of the study now, not at idle expiry
            end_session_remote(settings.assistant_url, result.answer["session_id"])
        except RadmeshError:
            pass
        return result
    from radmesh.assistant.command import ask_local

    mesh, store = _local_mesh(settings.weights)
    result = ask_local(mesh, store, question, ct)
    store.end(result.answer.get("session_id", ""))
    return result


def answer_study(row: StudyRow, settings: Settings) -> Outcome:
    """Answer ``row``'s question; a failed :class:`Outcome` (with the reason) for anything that goes wrong."""
    t0 = time.perf_counter()
    outcome = Outcome(row.study_id, FAILED, host=socket.gethostname())
    try:
        _answer(row, settings, outcome)
    except RadmeshError as e:
        outcome.reason = str(e)
    except MemoryError:
        outcome.reason = "out of memory reading or segmenting the study"
    except Exception as e:  # noqa: BLE001 - one study's bug must not end the cohort; the reason says what
        outcome.reason = f"internal error: {type(e).__name__}: {e}"
    outcome.elapsed_s = round(time.perf_counter() - t0, 3)
    return outcome


def _answer(row: StudyRow, settings: Settings, outcome: Outcome) -> None:
    from radmesh.assistant.command import answer_files
    from radmesh.assistant.core import Question
    from radmesh.common.imageio import read_ct_and_study

    ct, _, study = read_ct_and_study(row.path)
    question = Question(prompt=row.prompt, formats=settings.formats, fast=settings.fast,
                        figures=settings.figures, study=study)
    attempt = 0
    while True:
        attempt += 1
        try:
            result = _ask_once(row, settings, question, ct)
            break
        except TRANSIENT as e:
            if not settings.assistant_url or attempt > len(TRANSIENT_BACKOFF_S):
                outcome.attempts = attempt
                raise type(e)(f"{e} (after {attempt} attempt{'s' if attempt > 1 else ''})") from None
            time.sleep(TRANSIENT_BACKOFF_S[attempt - 1])
    outcome.attempts = attempt
    answer = result.answer
    if answer.get("kind") != "answer":
        # a refusal or a question back ("which do you mean?") is not a result for the cohort table
        outcome.reason = f"not answered (the assistant's {answer.get('kind', 'reply')}): {answer.get('text', '')}"
        return
    # the files `radmesh ask --out` writes: label map, report and DICOM when asked, key images, answer.json
    outcome.files = answer_files(result)
    outcome.answer = answer
    outcome.status = DONE
