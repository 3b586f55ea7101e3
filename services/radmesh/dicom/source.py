"""A DicomSource rebuilt from pixel-less slice headers (StudyMetadata.source_dicom_headers).

Services receive the source CT's slice headers as DICOM Part 10 bytes without
pixel data (``StudyMetadata.source_dicom_headers``), so a SEG and SR made far
from the CT can still reference its instances. :func:`source_from_headers` turns
those bytes back into a :class:`~radmesh.dicom.series.DicomSource` with the same
geometry rules as reading the series from disk. Its ``volume`` carries the
geometry only: the headers hold no pixels, so the array is a read-only view of
zeros (no memory is allocated for it) — use it for its grid, never for HU.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Geometry, Volume
from radmesh.dicom.series import DicomSource, geometry_from_headers, study_of

__all__ = ["headers_to_bytes", "source_from_headers"]


def headers_to_bytes(headers: Sequence[Dataset]) -> list[bytes]:
    """Slice headers → DICOM Part 10 bytes without pixel data (for StudyMetadata.source_dicom_headers)."""
    out = []
    for ds in headers:
        if "PixelData" in ds:
            ds = copy.deepcopy(ds)
            del ds.PixelData
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def source_from_headers(headers: Sequence[bytes | Dataset], geometry: Geometry | None = None) -> DicomSource:
    """Slice headers (bytes or datasets, any order) → DicomSource with headers in z order.

    ``geometry`` (e.g. the label map's), when given, must be the grid the headers
    describe: InvalidInputError otherwise. Headers that are not CT images of one
    series, or whose positions break the series rules of
    :mod:`radmesh.dicom.series`, are refused with InvalidInputError.
    """
    if not headers:
        raise InvalidInputError("source_dicom_headers is empty")
    datasets: list[Dataset] = []
    for n, raw in enumerate(headers):
        if isinstance(raw, Dataset):
            datasets.append(raw)
            continue
        try:
            ds = pydicom.dcmread(io.BytesIO(bytes(raw)), stop_before_pixels=True, force=True)
            if "SOPClassUID" not in ds:
                raise ValueError("no SOP Class UID")
        except Exception as e:  # noqa: BLE001 - whatever bytes a caller sent
            raise InvalidInputError(f"source_dicom_headers[{n}] is not a DICOM header ({type(e).__name__}: {e})"
                                    ) from None
        datasets.append(ds)
    modalities = sorted({str(ds.get("Modality", "") or "unknown").upper() for ds in datasets})
    if modalities != ["CT"]:
        raise InvalidInputError(f"source_dicom_headers are {', '.join(modalities)}; radmesh reads CT only")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) != 1:
        raise InvalidInputError(f"source_dicom_headers come from {len(series)} series; send one series")
    for n, ds in enumerate(datasets):
        if "Rows" not in ds or "Columns" not in ds:
            raise InvalidInputError(f"source_dicom_headers[{n}] is not an image (no Rows/Columns)")
    uid = series.pop()
    order, g, _ = geometry_from_headers(datasets, f"source_dicom_headers (CT series {uid})")
    if geometry is not None:
        g.require_match(geometry, what="label map", ref="source DICOM series")
    ordered = [datasets[i] for i in order]
    for ds in ordered:
        if "PixelData" in ds:
            del ds.PixelData
    volume = Volume(np.broadcast_to(np.int16(0), g.shape_zyx), g)
    return DicomSource(volume=volume, headers=ordered, study=study_of(ordered[0]),
                       chosen=f"series {uid} (CT, {len(ordered)} slices) from the source headers sent with the study")
