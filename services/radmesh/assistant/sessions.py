"""Conversations the assistant remembers: one study per session, its results, its turns.

A session holds its study (the CT, keyed by the SHA-256 of its wire payload, so the same
CT sent twice is one study), the label map of every structure segmented on it, the
measurements made so far (per class) and the turns of the conversation. The CT and the
label map live as ``.npy`` files in the session's own folder and are memory-mapped, so an
idle session costs disk, not memory. A session nobody used for ``idle_s`` seconds expires:
it is dropped and its folder removed (checked on every access and by a reaper thread).

Session ids are random (``secrets.token_urlsafe``) and never derived from the study, so
one user cannot guess another's session. One request at a time runs per session (its lock).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import ResourceExhaustedError
from radmesh.common.volume import Volume
from radmesh.measurement.edges import scan_edges

log = logging.getLogger("radmesh.assistant")

DEFAULT_IDLE_S = 1800.0  # 30 min without a question ends a session
DEFAULT_MAX_SESSIONS = 16


def _store(folder: Path, name: str, volume: Volume) -> Volume:
    """``volume`` written to ``folder/name.npy`` and memory-mapped back (read-only). A new name
    each time: truncating a file that is still mapped would pull the pages from under a reader."""
    path = folder / f"{name}.npy"
    np.save(path, np.ascontiguousarray(volume.array))
    return Volume(np.load(path, mmap_mode="r"), volume.geometry)


@dataclass
class Study:
    """One CT and what has been computed on it in this session."""

    handle: str  # SHA-256 of the CT's wire payload
    folder: Path  # the session's folder, where the study's arrays live
    ct: Volume
    metadata: dict[str, Any]  # StudyMetadata fields (never logged)
    size_bytes: int  # the CT payload's size as uploaded
    labels: Volume | None = None  # every structure segmented so far (uint8, the CT's grid)
    segmented: tuple[int, ...] = ()  # classes the label map covers (found or not)
    counts: dict[int, int] = field(default_factory=dict)  # class → voxels in the label map
    edges: dict[int, tuple[str, ...]] = field(default_factory=dict)  # class → scan edges it reaches (if any)
    fast: bool = False  # segmented at 3 mm
    model: dict[str, str] = field(default_factory=dict)  # ModelInfo fields of the segmentation
    measured: dict[int, dict[str, Any]] = field(default_factory=dict)  # class → StructureMeasurement dict
    grid: dict[str, Any] | None = None  # the MeasureResponse grid
    min_lesion_mm3: float | None = None  # as the measurement applied it
    _stores: int = 0
    _numbering: Any = None

    def store_labels(self, labels: Volume) -> None:
        """Keep ``labels`` (every structure segmented) on disk beside the CT, with its class counts."""
        array = np.asarray(labels.array)
        counts = np.bincount(array.ravel(), minlength=vocab.NUM_CLASSES + 1)
        old = self.labels
        self._stores += 1
        self.labels = _store(self.folder, f"labels-{self._stores}", labels)
        self.counts = {c: int(counts[c]) for c in range(1, vocab.NUM_CLASSES + 1)}
        boxes = ndimage.find_objects(array, max_label=vocab.NUM_CLASSES)
        self.edges = {i + 1: e for i, box in enumerate(boxes)
                      if box is not None and (e := scan_edges(box, labels.geometry))}
        if old is not None:
            (self.folder / f"labels-{self._stores - 1}.npy").unlink(missing_ok=True)

    def image_number(self, k: int) -> int:
        """The image number a reader sees for axial slice ``k`` (DICOM Instance Number, else k + 1)."""
        if self._numbering is None:
            from radmesh.report.core import image_numbering

            self._numbering = image_numbering(self.metadata, self.ct.geometry)
        return self._numbering(int(k))


@dataclass
class TurnRecord:
    """One question and what came of it."""

    prompt: str
    kind: str  # "answer" | "refusal" | "question"
    targets: list[dict[str, Any]]  # resolved targets: class_index, name, laterality, subregion
    actions: list[str]
    # For a question back: the targets it asked the user to choose from.
    choices: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Session:
    id: str
    folder: Path
    last_used: float = field(default_factory=time.monotonic)
    study: Study | None = None
    turns: list[TurnRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_study(self, handle: str, ct: Volume, metadata: dict[str, Any], size_bytes: int) -> bool:
        """Adopt the CT as the session's study; False when it already is (its results are kept)."""
        if self.study is not None and self.study.handle == handle:
            if metadata:
                self.study.metadata = metadata
            return False
        self.study = None  # release the old study's memory maps before its files go
        for old in self.folder.glob("*.npy"):
            old.unlink(missing_ok=True)
        self.study = Study(handle=handle, folder=self.folder, ct=_store(self.folder, f"ct-{handle[:16]}", ct),
                           metadata=metadata, size_bytes=size_bytes)
        return True

    @property
    def answers(self) -> list[TurnRecord]:
        return [t for t in self.turns if t.kind == "answer"]


class SessionStore:
    """Sessions by id, each with a folder under ``root`` (default: a new temporary folder)."""

    def __init__(self, root: str | Path | None = None, idle_s: float = DEFAULT_IDLE_S,
                 max_sessions: int = DEFAULT_MAX_SESSIONS, reap_every_s: float | None = None):
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="radmesh-assistant-"))
            self._own_root = True
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
            self._own_root = False
        self.idle_s = float(idle_s)
        self.max_sessions = int(max_sessions)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        every = reap_every_s if reap_every_s is not None else max(1.0, min(60.0, self.idle_s / 4))
        self._reaper = threading.Thread(target=self._reap_loop, args=(every,), name="session-reaper", daemon=True)
        self._reaper.start()

    # ---- lookup --------------------------------------------------------------------------
    def get(self, session_id: str) -> Session | None:
        """The live session, touched (its idle clock restarts); None when unknown or expired."""
        self.reap()
        with self._lock:
            s = self._sessions.get(session_id)
            if s is not None:
                s.last_used = time.monotonic()
            return s

    def peek(self, session_id: str) -> Session | None:
        """The live session without touching it."""
        self.reap()
        with self._lock:
            return self._sessions.get(session_id)

    def create(self) -> Session:
        self.reap()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise ResourceExhaustedError(
                    f"the assistant holds {len(self._sessions)} sessions, its limit; try again when one expires "
                    f"(idle sessions end after {self.idle_s:.0f} s)")
            sid = secrets.token_urlsafe(18)
            folder = self.root / sid
            folder.mkdir(mode=0o700)
            session = Session(sid, folder)
            self._sessions[sid] = session
        log.info("session started", extra={"sessions": len(self._sessions)})
        return session

    def expires_in_s(self, session: Session) -> float:
        return max(0.0, self.idle_s - (time.monotonic() - session.last_used))

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    # ---- ending ----------------------------------------------------------------------------
    def end(self, session_id: str) -> bool:
        with self._lock:
            s = self._sessions.pop(session_id, None)
        if s is None:
            return False
        self._remove(s)
        return True

    def reap(self) -> int:
        """Remove sessions idle for more than ``idle_s`` (not while a request holds one); returns how many."""
        now = time.monotonic()
        with self._lock:
            old = [s for s in self._sessions.values() if now - s.last_used > self.idle_s and not s.lock.locked()]
            for s in old:
                del self._sessions[s.id]
        for s in old:
            self._remove(s)
        if old:
            log.info("sessions expired", extra={"count": len(old), "sessions": len(self._sessions)})
        return len(old)

    def _remove(self, s: Session) -> None:
        s.study = None  # drop the memory maps before their files go
        shutil.rmtree(s.folder, ignore_errors=True)

    def _reap_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.reap()

    def close(self) -> None:
        """End every session (server shutdown) and remove the root if this store made it."""
        self._stop.set()
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            self._remove(s)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
