"""The output folder of ``radmesh batch``: what is done, and writing so nothing is ever half done.

    DIR/studies/<study_id>/     the files `radmesh ask --out` writes, and result.json
    DIR/lesions.csv|.parquet    one row per lesion (radmesh.batch.cohort)
    DIR/structures.csv|.parquet one row per structure per study
    DIR/summary.json            this run: done, failed (with the reason), not run

A study is done when ``studies/<study_id>/result.json`` exists: the folder is built under a
temporary name inside ``studies/`` and renamed into place with everything in it
(:func:`radmesh.report.artifacts.write_report_folder`), so a crash leaves either the whole
folder or a ``.<id>.partial-*`` folder that the next run removes. Only the driver writes
here; a lock file keeps two runs from writing the same folder at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.fileio import atomic_output

STUDIES = "studies"
RESULT = "result.json"
LOCK = ".radmesh-batch.lock"
PARTIAL = ".partial-"  # write_report_folder's temporary folders: ".<name>.partial-XXXX"


def study_dir(out: Path, study_id: str) -> Path:
    return out / STUDIES / study_id


@contextmanager
def locked(out: str | os.PathLike) -> Iterator[Path]:
    """Create ``out`` and hold its lock for the run; FailedPreconditionError while another run holds it."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"--out {root} exists and is not a folder")
    (root / STUDIES).mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FailedPreconditionError(f"another radmesh batch is writing {root}; wait for it or use another "
                                          f"--out") from None
        try:
            yield root
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_partials(out: Path) -> int:
    """Remove the temporary folders a run killed mid-write left behind; returns how many."""
    n = 0
    for p in (out / STUDIES).iterdir():
        if p.name.startswith(".") and PARTIAL in p.name and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


def read_result(out: Path, study_id: str) -> dict[str, Any] | None:
    """The study's result.json, or None when the study is not done."""
    path = study_dir(out, study_id) / RESULT
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise FailedPreconditionError(f"{path} cannot be read ({e}); remove {path.parent} to answer the study "
                                      f"again") from None


def done_results(out: Path, study_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {sid: r for sid in study_ids if (r := read_result(out, sid)) is not None}


def write_study(out: Path, study_id: str, files: dict[str, bytes], result: dict[str, Any]) -> Path:
    """Put the study's folder in place, complete: its files and result.json, renamed in at once."""
    from radmesh.report.artifacts import write_report_folder

    folder = study_dir(out, study_id)
    if folder.exists():
        # no result.json (else the study were done and not run again): not ours to keep
        # half of; an existing folder would be filled file by file, not renamed in whole
        shutil.rmtree(folder)
    body = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    write_report_folder(folder, {**files, RESULT: body.encode("utf-8")})
    return folder


def write_if_changed(path: Path, data: bytes) -> bool:
    """Replace ``path`` atomically when its bytes differ (a rerun with nothing new leaves it untouched)."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    with atomic_output(path, suffix=path.suffix) as tmp:
        tmp.write_bytes(data)
    return True
