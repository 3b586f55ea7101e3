"""The cohort tables and the run summary, built from the done studies' result.json.

Two tables, each as CSV (stdlib ``csv``) and Parquet (``pyarrow``), with the same rows:

- ``lesions``: one row per lesion (the measurement service's lesions, numbered 1, 2, … by
  decreasing volume within their class);
- ``structures``: one row per study and structure the question was about, found or not, with
  its lesion count — so a study where the tumour was *not* found is a row (``found`` false,
  ``lesion_count`` 0), which a lesion table cannot say.

Rows come in manifest order, then vocabulary order, then lesion id. Floats are written as
Python prints them (shortest round-trip), so the CSV and the Parquet hold the same numbers;
a value that does not exist (the HU of a structure not found) is an empty cell / null.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from radmesh.batch.outputs import write_if_changed

# (name, arrow type) — units in the names
LESION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("study_id", "string"), ("class_index", "int32"), ("class_name", "string"), ("lesion_id", "int32"),
    ("location", "string"), ("subregion", "string"), ("laterality", "string"),
    ("volume_ml", "float64"), ("long_axis_mm", "float64"), ("short_axis_mm", "float64"),
    ("max_diameter_mm", "float64"), ("hu_mean", "float64"), ("attenuation", "string"),
)
STRUCTURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("study_id", "string"), ("class_index", "int32"), ("class_name", "string"), ("found", "bool_"),
    ("volume_ml", "float64"), ("hu_mean", "float64"), ("lesion_count", "int32"),
)
TABLES = {"lesions": LESION_COLUMNS, "structures": STRUCTURE_COLUMNS}


def lesion_rows(study_id: str, findings: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for s in (findings or {}).get("structures") or []:
        for lesion in s.get("lesions") or []:
            rows.append({
                "study_id": study_id, "class_index": int(s["class_index"]), "class_name": s["name"],
                "lesion_id": int(lesion["id"]), "location": lesion.get("location") or "",
                "subregion": lesion.get("subregion") or "", "laterality": lesion.get("laterality") or "",
                "volume_ml": float(lesion["volume_ml"]), "long_axis_mm": float(lesion["long_axis_mm"]),
                "short_axis_mm": float(lesion["short_axis_mm"]),
                "max_diameter_mm": float(lesion["max_diameter_mm"]), "hu_mean": float(lesion["hu_mean"]),
                "attenuation": lesion.get("attenuation") or "",
            })
    return rows


def structure_rows(study_id: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The measured structures; a question that measured nothing ("segment the liver") gives
    the segmented ones, with their volumes and no HU."""
    findings = result.get("findings") or {}
    if findings.get("structures"):
        return [{"study_id": study_id, "class_index": int(s["class_index"]), "class_name": s["name"],
                 "found": int(s["voxel_count"]) > 0, "volume_ml": float(s["volume_ml"]),
                 # proto3 says 0.0 for "no voxels, no mean": that is no value, not 0 HU
                 "hu_mean": float(s["hu_mean"]) if int(s["voxel_count"]) > 0 else None,
                 "lesion_count": len(s.get("lesions") or [])} for s in findings["structures"]]
    return [{"study_id": study_id, "class_index": int(s["class_index"]), "class_name": s["name"],
             "found": int(s["voxel_count"]) > 0, "volume_ml": float(s["volume_ml"]), "hu_mean": None,
             "lesion_count": None} for s in result.get("segmented") or [] if not s.get("host_only")]


def cohort_rows(results: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """{"lesions": rows, "structures": rows} of (study_id, result.json) pairs, in their order."""
    out: dict[str, list[dict[str, Any]]] = {"lesions": [], "structures": []}
    for study_id, result in results:
        out["lesions"].extend(lesion_rows(study_id, result.get("findings")))
        out["structures"].extend(structure_rows(study_id, result))
    return out


def csv_bytes(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([name for name, _ in columns])
    for row in rows:
        writer.writerow(["" if row[name] is None else ("true" if row[name] is True else "false"
                                                         if row[name] is False else row[name])
                         for name, _ in columns])
    return buf.getvalue().encode("utf-8")


def parquet_bytes(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(name, getattr(pa, kind)()) for name, kind in columns])
    table = pa.Table.from_pylist([{name: row[name] for name, _ in columns} for row in rows], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_tables(out: Path, results: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Path]:
    """Every table as CSV and Parquet in ``out`` (each replaced atomically, only when it changed)."""
    rows = cohort_rows(results)
    paths = []
    for name, columns in TABLES.items():
        for suffix, encode in ((".csv", csv_bytes), (".parquet", parquet_bytes)):
            path = out / f"{name}{suffix}"
            write_if_changed(path, encode(rows[name], columns))
            paths.append(path)
    return paths


def summary_bytes(summary: Mapping[str, Any]) -> bytes:
    return (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
