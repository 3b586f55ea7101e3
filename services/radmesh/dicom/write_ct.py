"""Writing a Volume as a CT Image Storage series (one single-frame file per slice).

:func:`ct_headers` builds the per-slice datasets (every attribute of the CT Image
IOD except the pixels) from a :class:`~radmesh.common.volume.Geometry`;
:func:`write_ct_series` adds the pixels and writes the files. The DICOM SEG writer
uses :func:`ct_headers` to give a SEG made from a NIfTI source a series to
reference (see :mod:`radmesh.dicom.seg`).

Geometry (ITK convention in, DICOM out), for slice ``k`` of the volume:

- ImageOrientationPatient = direction columns x then y (row cosine, column cosine);
- ImagePositionPatient    = origin + k · spacing_z · direction column z;
- PixelSpacing            = (spacing_y, spacing_x)  — DICOM lists the row spacing first;
- SliceThickness          = spacing_z (these are contiguous reconstructions).

A volume whose direction is left-handed (column z = −(x × y), e.g. some NIfTI
files) is written as it is; a reader that sorts by position along x × y (as
:func:`radmesh.dicom.series.read_dicom_series` does) then gets the same physical
volume with its z axis reversed.

Pixels: HU are rounded to whole numbers and stored as signed 16-bit with
RescaleIntercept −1024 and RescaleSlope 1 (stored = HU + 1024), so HU from
−31744 to 31743 fit; values outside are an InvalidInputError.

UIDs: study, series and frame of reference come from ``study`` when it gives them
(StudyMetadata field names) and are generated otherwise; each SOP Instance UID is
derived from the series UID and the slice index, so the same series written twice
(or described twice by :func:`ct_headers`) has the same instance UIDs.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid
from pydicom.valuerep import format_number_as_ds

from radmesh import __version__
from radmesh.common.errors import InvalidInputError
from radmesh.common.fileio import atomic_output
from radmesh.common.volume import Geometry, Volume

__all__ = ["RESCALE_INTERCEPT", "STUDY_KEYS", "ct_headers", "ds_str", "instance_uid", "resolve_study",
           "write_ct_series"]

#: Stored value = HU − RESCALE_INTERCEPT (slope 1).
RESCALE_INTERCEPT = -1024
#: The StudyMetadata proto field names, in proto order.
STUDY_KEYS = (
    "patient_name", "patient_id", "patient_sex", "patient_birth_date", "study_date", "accession_number",
    "study_instance_uid", "series_instance_uid", "frame_of_reference_uid", "study_description",
)
MANUFACTURER = "radmesh"
IMPLEMENTATION_VERSION_NAME = "RADMESH"


def ds_str(value: float) -> str:
    """A float as a DICOM DS string of at most 16 characters, keeping as many digits as fit.

    (pydicom's ``format_number_as_ds`` can return 17 characters for values just
    under a power of ten, e.g. 9.999999999999998 → "10.00000000000000".)
    """
    v = float(value)
    if not np.isfinite(v):
        raise InvalidInputError(f"{v} cannot be written as a DICOM decimal string")
    if v == 0.0:
        return "0"
    s = format_number_as_ds(v)
    if len(s) <= 16:
        return s
    for digits in range(15, 0, -1):
        s = f"{v:.{digits}g}"
        if len(s) <= 16:
            return s
    raise InvalidInputError(f"{v} cannot be written as a DICOM decimal string")  # pragma: no cover


def instance_uid(series_instance_uid: str, index: int, kind: str = "ct") -> str:
    """The SOP Instance UID of item ``index`` of a series, derived from the series UID."""
    return generate_uid(entropy_srcs=[series_instance_uid, kind, str(int(index))])


def resolve_study(study: Mapping[str, str] | None) -> dict[str, str]:
    """``study`` with every StudyMetadata key present ('' when unknown) and the three UIDs filled in."""
    out = {k: "" for k in STUDY_KEYS}
    if study:
        unknown = sorted(set(study) - set(STUDY_KEYS) - {"source_dicom_headers"})
        if unknown:
            raise InvalidInputError(f"study has unknown key(s) {unknown}; expected StudyMetadata field names")
        for k in STUDY_KEYS:
            v = study.get(k, "")
            out[k] = "" if v is None else str(v).strip()
    for k in ("study_instance_uid", "series_instance_uid", "frame_of_reference_uid"):
        if not out[k]:
            out[k] = generate_uid()
        elif not pydicom.uid.UID(out[k]).is_valid:
            raise InvalidInputError(f"study.{k} {out[k]!r} is not a valid DICOM UID")
    for k in ("patient_birth_date", "study_date"):
        if out[k] and not (len(out[k]) == 8 and out[k].isdigit()):
            raise InvalidInputError(f"study.{k} {out[k]!r} is not a DICOM date (YYYYMMDD)")
    if out["patient_sex"] not in ("", "M", "F", "O"):
        raise InvalidInputError(f"study.patient_sex {out['patient_sex']!r} must be 'M', 'F', 'O' or ''")
    return out


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def ct_headers(geometry: Geometry, study: Mapping[str, str] | None = None, *,
               series_number: int = 1, series_description: str = "radmesh CT",
               image_type: Sequence[str] = ("DERIVED", "SECONDARY", "AXIAL"),
               instance_numbers: Sequence[int] | None = None) -> list[Dataset]:
    """One CT Image Storage dataset per slice of ``geometry`` (z-index order), without PixelData.

    The datasets carry every type 1/2 attribute of the CT Image IOD, the Image
    Pixel description for signed 16-bit pixels with RescaleIntercept −1024, and
    ``file_meta`` (Explicit VR Little Endian), so adding PixelData makes them
    complete instances. ``instance_numbers[k]`` is slice k's InstanceNumber
    (default k + 1).
    """
    s = resolve_study(study)
    nz, ny, nx = geometry.shape_zyx
    if instance_numbers is None:
        instance_numbers = range(1, nz + 1)
    elif len(instance_numbers) != nz:
        raise InvalidInputError(f"instance_numbers has {len(instance_numbers)} entries for {nz} slices")
    d = geometry.direction
    sx, sy, sz = geometry.spacing_xyz_mm
    origin = np.asarray(geometry.origin_lps_mm)
    iop = [ds_str(v) for v in (*d[:, 0], *d[:, 1])]
    normal = np.cross(d[:, 0], d[:, 1])
    date, time = _now()
    study_date = s["study_date"] or date

    out: list[Dataset] = []
    for k in range(nz):
        ipp = origin + d[:, 2] * (sz * k)
        sop_uid = instance_uid(s["series_instance_uid"], k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        # SOP Common
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
        # Patient
        ds.PatientName = s["patient_name"]
        ds.PatientID = s["patient_id"]
        ds.PatientBirthDate = s["patient_birth_date"]
        ds.PatientSex = s["patient_sex"]
        # General Study
        ds.StudyInstanceUID = s["study_instance_uid"]
        ds.StudyDate = study_date
        ds.StudyTime = time if not s["study_date"] else ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = ""
        ds.AccessionNumber = s["accession_number"]
        if s["study_description"]:
            ds.StudyDescription = s["study_description"]
        # General Series
        ds.Modality = "CT"
        ds.SeriesInstanceUID = s["series_instance_uid"]
        ds.SeriesNumber = int(series_number)
        ds.SeriesDescription = series_description[:64]
        ds.SeriesDate = study_date
        ds.Laterality = ""  # 2C: the body part is not a paired structure as far as we know
        ds.PatientPosition = ""  # 2C: unknown for a volume; patient coordinates (LPS) are what count
        # Frame of Reference
        ds.FrameOfReferenceUID = s["frame_of_reference_uid"]
        ds.PositionReferenceIndicator = ""
        # General Equipment
        ds.Manufacturer = MANUFACTURER
        ds.SoftwareVersions = __version__
        # General Image
        ds.InstanceNumber = int(instance_numbers[k])
        ds.ImageType = list(image_type)
        ds.ContentDate = study_date
        ds.ContentTime = time
        if image_type and image_type[0] == "DERIVED":
            ds.DerivationDescription = "Written by radmesh from a volume (NIfTI or generated)"
        # General Acquisition
        ds.AcquisitionNumber = 1
        # Image Plane
        ds.PixelSpacing = [ds_str(sy), ds_str(sx)]
        ds.ImageOrientationPatient = iop
        ds.ImagePositionPatient = [ds_str(v) for v in ipp]
        ds.SliceThickness = ds_str(sz)
        ds.SliceLocation = ds_str(float(ipp @ normal))
        # Image Pixel + CT Image
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = str(RESCALE_INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.KVP = ""
        # VOI LUT: a soft-tissue window, so viewers open it sensibly
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        out.append(ds)
    return out


def _stored_pixels(array: np.ndarray) -> np.ndarray:
    """HU (any real dtype) → int16 stored values (HU − RESCALE_INTERCEPT), checked for range."""
    a = np.asarray(array)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InvalidInputError(f"CT has dtype {a.dtype}; expected real Hounsfield units")
    lo, hi = float(a.min()), float(a.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InvalidInputError("CT holds NaN or infinite values; cannot be written as DICOM")
    lo_ok, hi_ok = -32768 + RESCALE_INTERCEPT, 32767 + RESCALE_INTERCEPT
    if np.rint(lo) < lo_ok or np.rint(hi) > hi_ok:
        raise InvalidInputError(
            f"CT values {lo:g}..{hi:g} HU do not fit 16-bit DICOM pixels with intercept {RESCALE_INTERCEPT} "
            f"({lo_ok}..{hi_ok} HU)")
    if np.issubdtype(a.dtype, np.floating):
        a = np.rint(a)
    return (a.astype(np.int32) - RESCALE_INTERCEPT).astype(np.int16)


SliceOrder = Literal["sequential", "shuffled"]


def write_ct_series(volume: Volume, out_dir: str | os.PathLike, study: Mapping[str, str] | None = None, *,
                    reverse_files: bool = False, slice_order: SliceOrder | Sequence[int] = "sequential",
                    shuffle_seed: int = 0, series_number: int = 1, series_description: str = "radmesh CT",
                    file_prefix: str = "CT") -> list[Path]:
    """Write ``volume`` (HU) as a CT Image Storage series into ``out_dir``; returns the files in z order.

    Files are named ``{file_prefix}{n:04d}.dcm`` with n = 1, 2, …, and n is also
    the slice's InstanceNumber. Which slice gets which n:

    - ``slice_order="sequential"``: file n holds z index n − 1;
    - ``slice_order="shuffled"``: a random permutation (``shuffle_seed``), so
      neither names nor InstanceNumbers follow position;
    - ``slice_order=[k0, k1, ...]``: file 1 holds z index k0, file 2 k1, …;
    - ``reverse_files=True`` then reverses that order (file 1 holds the last slice).

    ``study`` gives the StudyMetadata fields (patient, study, series and frame of
    reference UIDs); what it leaves empty is generated (see :func:`resolve_study`).
    Each file is written atomically. Returns the paths indexed by z.
    """
    if not isinstance(volume, Volume):
        raise InvalidInputError(f"volume must be a radmesh Volume, got {type(volume).__name__}")
    nz = volume.geometry.shape_zyx[0]
    if isinstance(slice_order, str):
        if slice_order == "sequential":
            order = list(range(nz))
        elif slice_order == "shuffled":
            order = list(range(nz))
            random.Random(shuffle_seed).shuffle(order)
        else:
            raise InvalidInputError(f"slice_order must be 'sequential', 'shuffled' or a list of z indices, "
                                    f"got {slice_order!r}")
    else:
        order = [int(k) for k in slice_order]
        if sorted(order) != list(range(nz)):
            raise InvalidInputError(f"slice_order must be a permutation of 0..{nz - 1}")
    if reverse_files:
        order = order[::-1]
    file_number = {k: n for n, k in enumerate(order, start=1)}  # z index → file/instance number

    stored = _stored_pixels(volume.array)
    headers = ct_headers(volume.geometry, study, series_number=series_number,
                         series_description=series_description,
                         instance_numbers=[file_number[k] for k in range(nz)])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for k, ds in enumerate(headers):
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2").tobytes()
        ds["PixelData"].VR = "OW"
        ds.SmallestImagePixelValue = int(stored[k].min())
        ds["SmallestImagePixelValue"].VR = "SS"
        ds.LargestImagePixelValue = int(stored[k].max())
        ds["LargestImagePixelValue"].VR = "SS"
        path = out / f"{file_prefix}{file_number[k]:04d}.dcm"
        with atomic_output(path, suffix=".dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths
