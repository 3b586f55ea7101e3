"""Reading a DICOM CT series: a folder of slices (searched recursively), a .zip of one, or one file.

:func:`read_dicom_series` returns a :class:`DicomSource`: the CT as a
:class:`~radmesh.common.volume.Volume` in HU, the slice headers (pixel data
removed) in the volume's z order, the study facts under the StudyMetadata proto
field names, and one sentence saying which series was chosen and what else was
there.

Which series
    Files are grouped by SeriesInstanceUID. Among the CT series (Modality CT,
    single-frame images), the one with the most slices is read; ties go to the
    lower SeriesNumber, then the lower UID. Everything else is named in
    ``chosen``. No CT series at all → InvalidInputError naming what was there
    ("the DICOM series is MR; radmesh reads CT only"). Within the chosen series,
    localizer images (ImageType LOCALIZER) are left out, and when images of
    several sizes or orientations share the series, the largest consistent set is
    read and the rest are named in ``chosen``.

Geometry (the rules SimpleITK does not enforce)
    - slices are sorted by position along the slice normal n = row × column
      cosine (ImagePositionPatient · n), never by file name or InstanceNumber;
    - the spacing between slices comes from the positions:
      (last − first) / (count − 1); every slice must lie within
      ``SPACING_TOLERANCE`` × spacing (at least 0.01 mm) of where that uniform
      grid puts it, otherwise the series is refused (a missing slice, mixed
      reconstruction intervals); two slices at one position are refused (several
      phases or acquisitions in one series); slice positions that drift in-plane
      along the stack (gantry tilt) are refused. SliceThickness is never used for
      spacing — except for a single-slice series, where SpacingBetweenSlices, or
      else SliceThickness, gives the thickness (no thickness → refused);
    - direction columns (ITK convention): x = row cosine (along a row, increasing
      column index), y = column cosine, z = n; so the z axis always points along
      increasing position and ``det(direction) = +1``; a series written in
      reverse or shuffled file order reads as the same volume, and an oblique
      series keeps its orientation;
    - origin = ImagePositionPatient of the first slice along n;
    - spacing (x, y, z) = (PixelSpacing[1], PixelSpacing[0], slice spacing):
      DICOM lists the row spacing (between rows, y) first.

Values
    Each slice's stored values are mapped through its own RescaleSlope and
    RescaleIntercept. The volume is int16 — what :func:`radmesh.common.imageio.read_volume`
    returns for an int16 NIfTI CT — when every slope and intercept is a whole
    number and the HU fit in int16; otherwise float32.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from radmesh.common.errors import InvalidInputError, ResourceExhaustedError
from radmesh.common.volume import Geometry, Volume
from radmesh.dicom.archive import MAX_MEMBERS, extract_zip

__all__ = ["DicomSource", "SPACING_TOLERANCE", "geometry_from_headers", "is_dicom_file", "read_dicom_series",
           "study_of"]

#: A slice may sit this fraction of the slice spacing (at least MIN_TOLERANCE_MM)
#: away from its place on the uniform grid. 10 %: positions rounded to 0.1 mm on
#: 0.625 mm slices pass; a missing slice (≥ 50 % off) or mixed intervals do not.
SPACING_TOLERANCE = 0.10
MIN_TOLERANCE_MM = 0.01
#: Two slices closer than this along the normal are at the same position.
SAME_POSITION_MM = 1e-3
#: Row and column cosines may differ between slices by this much.
ORIENTATION_TOLERANCE = 1e-4
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_STUDY_TAGS = {
    "patient_name": "PatientName", "patient_id": "PatientID", "patient_sex": "PatientSex",
    "patient_birth_date": "PatientBirthDate", "study_date": "StudyDate", "accession_number": "AccessionNumber",
    "study_instance_uid": "StudyInstanceUID", "series_instance_uid": "SeriesInstanceUID",
    "frame_of_reference_uid": "FrameOfReferenceUID", "study_description": "StudyDescription",
}


@dataclass(frozen=True)
class DicomSource:
    """A CT read from DICOM.

    volume:  HU (int16, or float32 when rescale parameters are fractional), (z, y, x), LPS geometry.
    headers: one dataset per slice in the volume's z order, PixelData removed.
    study:   StudyMetadata field names → values ('' when absent).
    chosen:  one sentence: which series was read and what else was present.
    """

    volume: Volume
    headers: list[Dataset] = field(repr=False)
    study: dict[str, str]
    chosen: str


def study_of(ds: Dataset) -> dict[str, str]:
    """The StudyMetadata fields of a dataset ('' for what it lacks)."""
    out = {}
    for key, tag in _STUDY_TAGS.items():
        v = ds.get(tag, "")
        out[key] = "" if v is None else str(v).strip()
    return out


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file has the DICOM Part 10 preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


# ---- scanning ----------------------------------------------------------------------

@dataclass
class _Series:
    uid: str
    modality: str
    files: list[Path] = field(default_factory=list)
    headers: list[Dataset] = field(default_factory=list)
    series_number: int | None = None
    multiframe: bool = False
    images: bool = False

    @property
    def is_ct_images(self) -> bool:
        return self.modality == "CT" and self.images


@dataclass
class _Scan:
    series: dict[str, _Series]
    files_seen: int
    not_dicom: int
    unreadable: list[str]
    dicomdir: int


def _read_header(path: Path) -> Dataset | None:
    """Header without pixels, or None when the file is not DICOM. Raises for a truncated DICOM file."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    # Files without the 128-byte preamble (older exports): accept only if they parse to a DICOM object.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom guessing at a file that may not be DICOM at all
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if "SOPClassUID" in ds and ("SeriesInstanceUID" in ds or "Modality" in ds):
                return ds
    except Exception:  # noqa: BLE001 - anything a non-DICOM file makes pydicom do
        pass
    return None


def _scan(files: list[Path]) -> _Scan:
    series: dict[str, _Series] = {}
    not_dicom, dicomdir, unreadable = 0, 0, []
    for path in files:
        try:
            ds = _read_header(path)
        except Exception as e:  # noqa: BLE001 - truncated or corrupt DICOM
            unreadable.append(f"{path.name} ({type(e).__name__}: {e})"[:200])
            continue
        if ds is None:
            not_dicom += 1
            continue
        sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", ""))
        if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            dicomdir += 1
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "(no SeriesInstanceUID)")
        modality = str(ds.get("Modality", "") or "unknown modality").strip().upper()
        s = series.get(uid)
        if s is None:
            s = series[uid] = _Series(uid=uid, modality=modality)
            try:
                s.series_number = int(ds.get("SeriesNumber")) if ds.get("SeriesNumber") not in (None, "") else None
            except (TypeError, ValueError):
                s.series_number = None
        s.files.append(path)
        s.headers.append(ds)
        if "Rows" in ds and "Columns" in ds:
            s.images = True
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            s.multiframe = True
    return _Scan(series, len(files), not_dicom, unreadable, dicomdir)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _describe_skipped(s: _Series) -> str:
    if s.is_ct_images:
        return f"CT {s.uid} ({_plural(len(s.files), 'slice')})"
    return f"{s.modality} ({_plural(len(s.files), 'file')})"


# ---- choosing --------------------------------------------------------------------

def _choose(scan: _Scan, where: Path) -> tuple[_Series, list[_Series]]:
    if not scan.series:
        if scan.files_seen == 0:
            raise InvalidInputError(f"{where}: no files in this folder or archive; expected DICOM CT slices")
        detail = []
        if scan.unreadable:
            detail.append(f"{_plural(len(scan.unreadable), 'corrupt DICOM file')}, e.g. {scan.unreadable[0]}")
        if scan.not_dicom:
            detail.append(f"{_plural(scan.not_dicom, 'file')} that are not DICOM")
        if scan.dicomdir:
            detail.append("only a DICOMDIR")
        raise InvalidInputError(f"{where}: no DICOM images found ({'; '.join(detail) or 'nothing readable'})")
    candidates = [s for s in scan.series.values() if s.is_ct_images]
    if not candidates:
        found = sorted({s.modality for s in scan.series.values()})
        what = found[0] if len(found) == 1 else ", ".join(found)
        verb = "series is" if len(scan.series) == 1 else "series are"
        if found == ["CT"]:
            raise InvalidInputError(f"{where}: the DICOM CT objects hold no images; radmesh reads CT image slices")
        raise InvalidInputError(f"{where}: the DICOM {verb} {what}; radmesh reads CT only")
    candidates.sort(key=lambda s: (-len(s.files), s.series_number if s.series_number is not None else 1 << 30,
                                   s.uid))
    chosen = candidates[0]
    if chosen.multiframe:
        raise InvalidInputError(
            f"{where}: CT series {chosen.uid} is a multi-frame (enhanced) CT object; radmesh reads "
            "single-frame CT slices (CT Image Storage) — export the series as classic slices")
    others = [s for s in scan.series.values() if s is not chosen]
    others.sort(key=lambda s: (not s.is_ct_images, -len(s.files), s.modality, s.uid))
    return chosen, others


def _vec(ds: Dataset, tag: str, n: int, where: str) -> np.ndarray:
    v = ds.get(tag)
    try:
        a = np.array([float(x) for x in v], dtype=np.float64)
    except (TypeError, ValueError):
        a = np.array([])
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise InvalidInputError(f"{where}: {tag} is missing or malformed ({v!r}); radmesh needs it to place the slice")
    return a


def _consistent_subset(s: _Series, where: Path) -> tuple[list[int], list[str]]:
    """Indices (into s.files) of the slices to read, and notes on what was left out."""
    notes = []
    keep = []
    localizers = non_images = 0
    for i, ds in enumerate(s.headers):
        if "Rows" not in ds or "Columns" not in ds:
            non_images += 1
        elif any(str(t).upper() == "LOCALIZER" for t in (ds.get("ImageType") or [])):
            localizers += 1
        else:
            keep.append(i)
    if localizers:
        notes.append(f"{_plural(localizers, 'localizer image')} left out")
    if non_images:
        notes.append(f"{_plural(non_images, 'object')} without an image left out")
    if not keep:
        raise InvalidInputError(f"{where}: CT series {s.uid} holds only localizer images")
    # group by size and orientation (orientations within 1e-3 of a group's first are one group)
    groups: dict[tuple, list[int]] = defaultdict(list)
    representatives: list[np.ndarray] = []
    for i in keep:
        ds = s.headers[i]
        try:
            iop = np.array([float(x) for x in ds.get("ImageOrientationPatient")], dtype=np.float64)
            if iop.shape != (6,):
                raise ValueError
        except (TypeError, ValueError):
            key_iop = -1  # missing or malformed: geometry_from_headers names it
        else:
            for key_iop, rep in enumerate(representatives):
                if np.max(np.abs(rep - iop)) <= 1e-3:
                    break
            else:
                representatives.append(iop)
                key_iop = len(representatives) - 1
        groups[(int(ds.Rows), int(ds.Columns), key_iop)].append(i)
    if len(groups) > 1:
        best = max(groups.values(), key=len)
        rest = sum(len(g) for g in groups.values()) - len(best)
        notes.append(f"{_plural(rest, 'image')} of another size or orientation in the same series left out")
        keep = sorted(best)
    return keep, notes


# ---- geometry and pixels -------------------------------------------------------------

def geometry_from_headers(headers: list[Dataset], where: str) -> tuple[np.ndarray, Geometry, str]:
    """Sort order (indices into ``headers``), geometry and a note about the slice spacing.

    Applies every rule of the module docstring (sorting along the normal, spacing from
    positions, uniformity, repeats, in-plane drift); InvalidInputError names what fails.
    """
    first = headers[0]
    iop = _vec(first, "ImageOrientationPatient", 6, where)
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InvalidInputError(
            f"{where}: ImageOrientationPatient {list(iop)} is not two orthogonal unit vectors")
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    normal = np.cross(row, col)
    ps = _vec(first, "PixelSpacing", 2, where)
    if min(ps) <= 0:
        raise InvalidInputError(f"{where}: PixelSpacing {list(ps)} must be positive")
    rows, cols = int(first.Rows), int(first.Columns)
    for ds in headers[1:]:
        other = _vec(ds, "ImageOrientationPatient", 6, where)
        if np.max(np.abs(other - iop)) > ORIENTATION_TOLERANCE:
            raise InvalidInputError(f"{where}: slices have different ImageOrientationPatient "
                                    f"({list(iop)} and {list(other)}); one series must be one orientation")
        if np.max(np.abs(_vec(ds, "PixelSpacing", 2, where) - ps)) > 1e-4 * max(ps):
            raise InvalidInputError(f"{where}: slices have different PixelSpacing; one series must be one grid")
        if int(ds.Rows) != rows or int(ds.Columns) != cols:
            raise InvalidInputError(
                f"{where}: slices have different sizes ({rows}×{cols} and {ds.Rows}×{ds.Columns})")
    pos = np.stack([_vec(ds, "ImagePositionPatient", 3, where) for ds in headers])
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    along, pos = along[order], pos[order]
    n = len(headers)
    if n == 1:
        thickness, source = None, ""
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            v = first.get(tag)
            try:
                if v is not None and v != "" and float(v) > 0:
                    thickness, source = float(v), tag
                    break
            except (TypeError, ValueError):
                pass
        if thickness is None:
            raise InvalidInputError(
                f"{where}: a single CT slice without SpacingBetweenSlices or SliceThickness; its thickness is "
                "unknown, so its volume cannot be measured")
        sz, note = thickness, f"one slice, thickness {thickness:g} mm from {source}"
    else:
        gaps = np.diff(along)
        if np.min(gaps) < SAME_POSITION_MM:
            k = int(np.argmin(gaps))
            repeats = int(np.sum(gaps < SAME_POSITION_MM))
            raise InvalidInputError(
                f"{where}: {_plural(repeats, 'slice position')} repeat (e.g. two slices at {along[k]:.3f} mm along "
                "the slice normal): the series holds more than one volume (phases, echoes or acquisitions); "
                "split it into one series per volume")
        sz = float((along[-1] - along[0]) / (n - 1))
        tol = max(MIN_TOLERANCE_MM, SPACING_TOLERANCE * sz)
        ideal = along[0] + sz * np.arange(n)
        dev = np.abs(along - ideal)
        if dev.max() > tol:
            lo, hi = float(gaps.min()), float(gaps.max())
            raise InvalidInputError(
                f"{where}: slice spacing is not uniform (gaps from {lo:.3f} to {hi:.3f} mm; a slice lies "
                f"{dev.max():.3f} mm from a uniform {sz:.3f} mm grid, tolerance {tol:.3f} mm): a slice is missing "
                "or the series mixes reconstruction intervals")
        drift = pos - pos[0] - np.outer(along - along[0], normal)
        drift_mm = float(np.linalg.norm(drift, axis=1).max())
        tol_plane = max(MIN_TOLERANCE_MM, SPACING_TOLERANCE * float(min(ps)))
        if drift_mm > tol_plane:
            angle = np.degrees(np.arctan2(drift_mm, along[-1] - along[0]))
            raise InvalidInputError(
                f"{where}: slice positions drift {drift_mm:.2f} mm in-plane along the stack (gantry tilt of about "
                f"{angle:.1f}°); radmesh needs slices stacked along their normal — resample the series first")
        note = f"slice spacing {sz:.4g} mm from positions"
    direction = np.stack([row, col, normal], axis=1)
    geometry = Geometry(shape_zyx=(n, rows, cols), spacing_xyz_mm=(float(ps[1]), float(ps[0]), sz),
                        origin_lps_mm=tuple(float(v) for v in pos[0]), direction=direction)
    return order, geometry, note


def _rescale(ds: Dataset) -> tuple[float, float]:
    raw_slope, raw_intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    try:
        slope = 1.0 if raw_slope in (None, "") else float(raw_slope)
        intercept = 0.0 if raw_intercept in (None, "") else float(raw_intercept)
    except (TypeError, ValueError):
        raise InvalidInputError("RescaleSlope/RescaleIntercept are not numbers") from None
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise InvalidInputError(f"RescaleSlope {slope} / RescaleIntercept {intercept} are not usable")
    return slope, intercept


def _pixels(files: list[Path], rows: int, cols: int, where: str) -> tuple[np.ndarray, list[Dataset]]:
    """HU volume (z order of ``files``) and the datasets with PixelData removed.

    Slices are read and decoded one at a time and their pixel data dropped at once,
    so the peak is the output array plus one slice. Output int16 while every slope
    and intercept is whole and the HU fit; float32 from the first slice that is not.
    """
    n = len(files)
    out: np.ndarray = np.empty((n, rows, cols), dtype=np.int16)
    datasets: list[Dataset] = []
    for k, path in enumerate(files):
        try:
            ds = pydicom.dcmread(path)
        except Exception as e:  # noqa: BLE001 - changed or truncated since the scan
            raise InvalidInputError(f"{where}: {path.name} cannot be read ({type(e).__name__}: {e})") from None
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise InvalidInputError(f"{where}: {path.name} is not a greyscale image (SamplesPerPixel "
                                    f"{ds.SamplesPerPixel}); a CT slice has one value per pixel")
        try:
            slope, intercept = _rescale(ds)
        except InvalidInputError as e:
            raise InvalidInputError(f"{where}: {path.name}: {e}") from None
        try:
            raw = ds.pixel_array
        except Exception as e:  # noqa: BLE001 - missing decoders, truncated pixel data, ...
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            ts_name = getattr(ts, "name", str(ts)) if ts is not None else "unknown transfer syntax"
            raise InvalidInputError(
                f"{where}: pixel data of {path.name} cannot be decoded ({ts_name}: {str(e).splitlines()[0][:160]})"
            ) from None
        if raw.shape != (rows, cols):
            raise InvalidInputError(f"{where}: pixel data of {path.name} has shape {raw.shape}, "
                                    f"expected {rows}×{cols}")
        del ds.PixelData
        datasets.append(ds)
        if out.dtype == np.int16 and slope.is_integer() and intercept.is_integer():
            hu = raw.astype(np.int32) * int(slope) + int(intercept)
            if hu.size == 0 or (-32768 <= int(hu.min()) and int(hu.max()) <= 32767):
                out[k] = hu
                continue
        if out.dtype == np.int16:
            out = out.astype(np.float32)  # earlier slices are exact in float32 (|HU| < 2**24)
        out[k] = raw.astype(np.float64) * slope + intercept
    return out, datasets


# ---- entry point -------------------------------------------------------------------------

def _list_files(folder: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            p = Path(root) / name
            if p.is_file():
                files.append(p)
                if len(files) > MAX_MEMBERS:
                    raise ResourceExhaustedError(
                        f"{folder}: more than {MAX_MEMBERS} files; point radmesh at the folder of one study")
    return files


def read_dicom_series(path: str | os.PathLike, *, max_zip_bytes: int | None = None) -> DicomSource:
    """Read the CT series in ``path``: a folder (searched recursively), a .zip of one, or a single DICOM file.

    ``max_zip_bytes`` caps what a .zip may unpack to (default: RADMESH_MAX_DICOM_ZIP_MB or 4 GiB).
    Raises InvalidInputError naming the problem (no DICOM, not CT, corrupt files,
    inconsistent geometry, corrupt or traversing zip) and ResourceExhaustedError
    for archives over the cap.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file or folder")
    if p.is_dir():
        return _read_files(_list_files(p), p)
    if p.suffix.lower() == ".zip" or (zipfile.is_zipfile(p) and not is_dicom_file(p)):
        with tempfile.TemporaryDirectory(prefix="radmesh-dicom-") as tmp:
            files = extract_zip(p, tmp, max_zip_bytes)
            return _read_files(files, p)
    return _read_files([p], p)


def _read_files(files: list[Path], where: Path) -> DicomSource:
    scan = _scan(files)
    chosen, others = _choose(scan, where)
    keep, notes = _consistent_subset(chosen, where)
    label = f"{where} (CT series {chosen.uid})"
    order, geometry, spacing_note = geometry_from_headers([chosen.headers[i] for i in keep], label)
    files_z = [chosen.files[keep[i]] for i in order]
    rows, cols = geometry.shape_zyx[1:]
    array, datasets = _pixels(files_z, rows, cols, label)
    volume = Volume(array, geometry)

    n = geometry.shape_zyx[0]
    total = len(scan.series)
    head = f"series {chosen.uid} (CT, {_plural(n, 'slice')}"
    desc = str(datasets[0].get("SeriesDescription", "") or "").strip()
    head += f", \"{desc}\")" if desc else ")"
    if total == 1:
        sentence = head + " chosen, the only series"
    else:
        sentence = head + f" chosen of {total} series; skipped: " + ", ".join(_describe_skipped(s) for s in others)
    extras = [spacing_note, *notes]
    if scan.not_dicom:
        extras.append(f"{_plural(scan.not_dicom, 'non-DICOM file')} ignored")
    if scan.unreadable:
        extras.append(f"{_plural(len(scan.unreadable), 'corrupt DICOM file')} ignored")
    if scan.dicomdir:
        extras.append("DICOMDIR ignored")
    sentence += "; " + "; ".join(extras)
    return DicomSource(volume=volume, headers=datasets, study=study_of(datasets[0]), chosen=sentence)
