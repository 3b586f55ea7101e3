"""The files a report comes with: report.json, report.txt, seg.dcm, sr.dcm, labels.nii.gz.

Built in memory as ``{file name: bytes}`` by the CLI and by the report service
alike (so both hand back the same files), and written to a folder atomically by
:func:`write_report_folder`: a new folder appears complete or not at all; in an
existing folder every file is replaced by rename, after everything was built.

DICOM SEG and SR come from :mod:`radmesh.dicom` (SR TID 1500 references the SEG,
so asking for SR builds the SEG too); the NIfTI is the label map itself.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.fileio import current_umask
from radmesh.common.imageio import write_volume
from radmesh.common.volume import Volume
from radmesh.report.core import Report

__all__ = ["FILE_NAMES", "FORMATS", "MEDIA_TYPES", "build_artifacts", "dicom_source", "media_type", "nifti_bytes",
           "parse_formats", "report_files", "write_report_folder"]

#: Output formats besides the report, in the order files are produced.
FORMATS = ("seg", "sr", "nifti")
FILE_NAMES = {"seg": "seg.dcm", "sr": "sr.dcm", "nifti": "labels.nii.gz"}
MEDIA_TYPES = {"report.json": "application/json", "report.txt": "text/plain", "seg.dcm": "application/dicom",
               "sr.dcm": "application/dicom", "labels.nii.gz": "application/gzip"}


def media_type(name: str) -> str:
    """The media type of a report-folder file (key images are PNG)."""
    if name in MEDIA_TYPES:
        return MEDIA_TYPES[name]
    return "image/png" if name.endswith(".png") else "application/octet-stream"


def parse_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """"seg,sr" → ("seg", "sr") in canonical order; None → all; "" or "none" → none."""
    if text is None:
        return FORMATS
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t and t != "none"]
    bad = [t for t in items if t not in FORMATS]
    if bad:
        raise InvalidInputError(f"unknown output format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in items)


def _dicom_bytes(ds: Any) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def nifti_bytes(labels: Volume) -> bytes:
    # ITK writes NIfTI only to a path; its gzip stream carries no timestamp, so the bytes are
    # a function of the label map alone (the CLI and the service produce identical files).
    with tempfile.TemporaryDirectory(prefix="radmesh-report-") as tmp:
        path = Path(tmp) / "labels.nii.gz"
        write_volume(labels, path)
        return path.read_bytes()


def dicom_source(study: Mapping[str, Any], labels: Volume | None) -> Any:
    """The CT's DicomSource rebuilt from the study's source headers, or None (NIfTI source)."""
    if not study.get("source_dicom_headers"):
        return None
    from radmesh.dicom.source import source_from_headers

    return source_from_headers(study["source_dicom_headers"], labels.geometry if labels is not None else None)


def build_artifacts(formats: Sequence[str], labels: Volume | None, findings: Mapping[str, Any],
                    study: Mapping[str, Any], source: Any, model: Mapping[str, Any]) -> dict[str, bytes]:
    """``{file name: content}`` of the requested formats, in FORMATS order.

    ``labels``: uint8 label map the findings were measured on (checked by the caller);
    ``study``: StudyMetadata fields; ``source``: the CT's ``DicomSource`` or None for NIfTI;
    ``model``: ModelInfo fields. FailedPreconditionError when a format is asked for
    without a label map.
    """
    formats = parse_formats(list(formats))
    if not formats:
        return {}
    if labels is None:
        raise FailedPreconditionError(
            f"{', '.join(FILE_NAMES[f] for f in formats)} need the label map; send it after the options")
    out: dict[str, bytes] = {}
    if "seg" in formats or "sr" in formats:
        from radmesh.dicom.seg import build_seg
        from radmesh.dicom.sr import build_sr

        meta = {k: v for k, v in study.items() if k != "source_dicom_headers"}  # the headers travel in ``source``
        classes = [s["class_index"] for s in findings["structures"] if s["voxel_count"]]
        if not classes:
            raise FailedPreconditionError("DICOM SEG needs at least one segmented structure; every class in the "
                                          "findings is absent")
        seg = build_seg(labels, classes, meta, source, dict(model))
        if "seg" in formats:
            out[FILE_NAMES["seg"]] = _dicom_bytes(seg)
        if "sr" in formats:
            out[FILE_NAMES["sr"]] = _dicom_bytes(build_sr(dict(findings), seg, meta, source, dict(model)))
    if "nifti" in formats:
        out[FILE_NAMES["nifti"]] = nifti_bytes(labels)
    return out


def report_files(report: Report | None = None, text: str | None = None,
                 json_text: str | None = None) -> dict[str, bytes]:
    """report.json and report.txt of a report (or of its JSON and text as received over gRPC)."""
    if report is not None:
        json_text, text = report.json_text, report.text
    assert text is not None and json_text is not None
    return {"report.json": json_text.encode("utf-8"), "report.txt": text.encode("utf-8")}


def write_report_folder(out_dir: str | os.PathLike, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` into ``out_dir`` so that no reader ever sees a partial result.

    A folder that does not exist is built under a temporary name beside it and renamed
    into place; in an existing folder each file is written to a temporary name and
    renamed over its old version. Returns the written paths.
    """
    out = Path(out_dir)
    for name in files:
        if Path(name).name != name or name in ("", ".", ".."):
            raise InvalidInputError(f"artifact name {name!r} is not a plain file name")
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a folder")
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        try:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; a result folder should read like any other
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return [out / name for name in files]
    # Every file is written to a temporary name first; only when all are on disk are they
    # renamed over the old versions, so a failed write changes nothing.
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            fd, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=Path(name).suffix, dir=out)
            staged.append((Path(tmp_name), out / name))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp_name, 0o666 & ~current_umask())
        for tmp_path, target in staged:
            os.replace(tmp_path, target)
    except BaseException:
        for tmp_path, _ in staged:
            tmp_path.unlink(missing_ok=True)
        raise
    return [target for _, target in staged]

