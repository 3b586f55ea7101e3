"""The studies CSV of ``radmesh batch``: one row per study.

Columns (header row required, names case-insensitive, any order, other columns ignored):

- ``study_id`` — unique; it names the study's output folder, so letters, digits, ``.``, ``_``
  and ``-`` only, not starting with ``.``;
- ``path`` — the CT: a NIfTI file, a DICOM folder, a ``.zip`` of slices or one DICOM file;
  relative paths are relative to the manifest's folder;
- ``prompt`` (optional) — this study's question; empty cells take ``--prompt``.

Every problem is an :class:`InvalidInputError` naming the manifest and the line (the header
is line 1), so a cohort of hundreds is fixed before any work is submitted.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from radmesh.common.errors import InvalidInputError

REQUIRED_COLUMNS = ("study_id", "path")
OPTIONAL_COLUMNS = ("prompt",)
# a study id is a folder name on every file system the results may be copied to
STUDY_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
MAX_LISTED_PROBLEMS = 3


@dataclass(frozen=True)
class StudyRow:
    study_id: str
    path: str  # absolute
    prompt: str
    line: int  # in the manifest, for messages


def read_manifest(manifest: str | os.PathLike, default_prompt: str | None = None) -> list[StudyRow]:
    """The manifest's studies in file order; InvalidInputError naming the line of each problem."""
    path = Path(manifest)
    if not path.is_file():
        raise InvalidInputError(f"manifest {path}: no such file")
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"manifest {path}: not UTF-8 text (byte {e.start})") from None
    # newline="": quoted cells may hold line breaks, and line_num counts them
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInputError(f"manifest {path}: empty; expected a header row with study_id,path") from None
    except csv.Error as e:
        raise InvalidInputError(f"manifest {path} line 1: {e}") from None
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InvalidInputError(f"manifest {path} line 1: no {' or '.join(missing)} column (the header is "
                                f"{','.join(h.strip() for h in header) or 'empty'}; expected study_id,path[,prompt])")
    repeated = sorted({n for n in names if n in REQUIRED_COLUMNS + OPTIONAL_COLUMNS and names.count(n) > 1})
    if repeated:
        raise InvalidInputError(f"manifest {path} line 1: column {', '.join(repeated)} appears more than once")
    col = {n: names.index(n) for n in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if n in names}
    base = path.resolve().parent
    rows: list[StudyRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank lines are common at the end of hand-made files
            if len(cells) < len(header):
                cells = cells + [""] * (len(header) - len(cells))
            study_id = cells[col["study_id"]].strip()
            where = cells[col["path"]].strip()
            prompt = cells[col["prompt"]].strip() if "prompt" in col else ""
            problem = _row_problem(study_id, where, prompt or default_prompt, seen, base)
            if problem:
                problems.append(f"line {line}: {problem}")
                continue
            seen[study_id] = line
            rows.append(StudyRow(study_id, str((base / where).resolve()), prompt or str(default_prompt), line))
    except csv.Error as e:
        problems.append(f"line {reader.line_num}: {e}")
    if problems:
        more = len(problems) - MAX_LISTED_PROBLEMS
        raise InvalidInputError(f"manifest {path} " + "; ".join(problems[:MAX_LISTED_PROBLEMS])
                                + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""))
    if not rows:
        raise InvalidInputError(f"manifest {path}: no studies (only a header)")
    return rows


def _row_problem(study_id: str, where: str, prompt: str | None, seen: dict[str, int], base: Path) -> str:
    if not study_id:
        return "empty study_id"
    if not STUDY_ID.match(study_id):
        return (f"study_id {study_id!r} is not a usable folder name (letters, digits, '.', '_' and '-', "
                f"at most 128, not starting with '.')")
    if study_id in seen:
        return f"study_id {study_id!r} repeats line {seen[study_id]}"
    if not where:
        return f"study {study_id}: empty path"
    if not (base / where).exists():
        return f"study {study_id}: {where}: no such file or folder"
    if not prompt:
        return f"study {study_id}: no prompt (give --prompt or fill the prompt column)"
    return ""
