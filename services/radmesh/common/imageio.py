"""Reading and writing volumes: NIfTI files (SimpleITK) and DICOM CT series (radmesh.dicom).

Both paths hand back LPS geometry and (z, y, x) arrays, so the rest of radmesh
never sees a RAS affine or a DICOM tag. DICOM — a folder of slices, a .zip of
one, or a single DICOM file — goes through :func:`radmesh.dicom.series.read_dicom_series`,
which sorts slices by position, takes the slice spacing from the positions and
refuses series whose geometry it cannot trust (see that module). Files are
written to a temporary name in the same folder and renamed, so a failed write
never leaves a half-written file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from radmesh.common.errors import InvalidInputError
from radmesh.common.fileio import atomic_output
from radmesh.common.volume import Geometry, Volume

if TYPE_CHECKING:
    from radmesh.dicom.series import DicomSource

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def geometry_of(image: sitk.Image) -> Geometry:
    if image.GetDimension() != 3:
        raise InvalidInputError(f"expected a 3-D volume, got {image.GetDimension()}-D")
    return Geometry(
        shape_zyx=tuple(reversed(image.GetSize())),
        spacing_xyz_mm=image.GetSpacing(),
        origin_lps_mm=image.GetOrigin(),
        direction=np.asarray(image.GetDirection()).reshape(3, 3),
    )


def to_sitk(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    g = volume.geometry
    image.SetSpacing(g.spacing_xyz_mm)
    image.SetOrigin(g.origin_lps_mm)
    image.SetDirection(tuple(float(v) for v in g.direction.ravel()))
    return image


def from_sitk(image: sitk.Image) -> Volume:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(
            f"expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} (an RGB or vector image?)"
        )
    return Volume(sitk.GetArrayFromImage(image), geometry_of(image))


def is_dicom_input(path: str | os.PathLike) -> bool:
    """True for what the DICOM reader takes: a folder, a .zip, or a DICOM Part 10 file."""
    from radmesh.dicom.series import is_dicom_file

    p = Path(path)
    if p.is_dir():
        return True
    if p.name.endswith(NIFTI_SUFFIXES):
        return False
    return p.suffix.lower() in (".zip", ".dcm") or is_dicom_file(p)


def read_ct(path: str | os.PathLike,
            announce: "Callable[[str], None] | None" = None) -> "tuple[Volume, DicomSource | None]":
    """A CT from NIfTI or DICOM → (volume, DicomSource or None for NIfTI).

    Callers that write DICOM SEG/SR need the DicomSource (slice headers, study
    facts); everyone else can use :func:`read_volume`. ``announce`` receives the
    DICOM reader's sentence on which series was read and what else was there (the
    CLI prints it: a user must know which of several series was measured).
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file or folder")
    if is_dicom_input(p):
        from radmesh.dicom.series import read_dicom_series

        source = read_dicom_series(p)
        if announce is not None:
            announce(source.chosen)
        return source.volume, source
    return _read_nifti(p), None


def read_ct_and_study(path: str | os.PathLike, announce: "Callable[[str], None] | None" = None
                      ) -> tuple[Volume, Any, dict[str, Any]]:
    """(CT, DicomSource or None, StudyMetadata dict) — DICOM headers and study facts when the CT is DICOM.
    ``announce`` receives the sentence on which DICOM series was read (see :func:`read_ct`)."""
    ct, source = read_ct(path, announce)
    if source is None:
        return ct, None, {}
    from radmesh.dicom.source import headers_to_bytes
    from radmesh.v1 import report_pb2

    fields = {f.name for f in report_pb2.StudyMetadata.DESCRIPTOR.fields}
    study = {k: v for k, v in dict(source.study).items() if v and k in fields}
    study["source_dicom_headers"] = headers_to_bytes(source.headers)
    return ct, source, study


def read_volume(path: str | os.PathLike, announce: "Callable[[str], None] | None" = None) -> Volume:
    """A NIfTI file, or DICOM (folder of slices, .zip, single file) → Volume. Errors name the file and the problem.

    ``announce``: as for :func:`read_ct`."""
    return read_ct(path, announce)[0]


def _read_nifti(p: Path) -> Volume:
    if not p.name.endswith(NIFTI_SUFFIXES):
        raise InvalidInputError(
            f"{p}: not a NIfTI file (.nii or .nii.gz), a DICOM folder, a .zip of DICOM slices or a DICOM file")
    _check_nifti_complete(p)
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as e:
        raise InvalidInputError(f"{p}: cannot be read as NIfTI ({_first_line(e)})") from None
    return from_sitk(image)


def _check_nifti_complete(p: Path) -> None:
    """InvalidInputError when a NIfTI file holds less image data than its header declares.

    SimpleITK reads a truncated file (an interrupted copy, a partial download) without a word
    and fills the missing voxels with 0. Cheap where it can be: an uncompressed file's size, or
    a gzip file's trailer (ISIZE, the uncompressed length mod 2**32, RFC 1952), equal to what
    the header declares. The last four bytes of a cut gzip stream are arbitrary, so when they
    differ (a cut file, or a writer that pads after the data) the stream is decompressed once
    to count: about a second for a 512² × 300 CT, paid only then.
    """
    import gzip
    import zlib

    import nibabel as nib

    try:
        image = nib.load(str(p))  # the header only; the data stay on disk
        header = image.header
        # the data's offset as stored (the loaded header's vox_offset reads 0)
        need = int(image.dataobj.offset) + \
            int(np.prod(header.get_data_shape(), dtype=np.int64)) * header.get_data_dtype().itemsize
    except Exception as e:  # noqa: BLE001 - nibabel raises many kinds for a bad or cut header
        raise InvalidInputError(f"{p}: cannot be read as NIfTI ({type(e).__name__}: {e})") from None
    if not p.name.endswith(".gz"):
        have = p.stat().st_size
    else:
        with open(p, "rb") as f:
            f.seek(-4, os.SEEK_END)
            if int.from_bytes(f.read(4), "little") == need % (1 << 32):
                return
        have = 0
        try:
            with gzip.open(p, "rb") as f:
                while block := f.read(1 << 22):
                    have += len(block)
        except (EOFError, OSError, zlib.error) as e:
            raise InvalidInputError(f"{p}: truncated or corrupt NIfTI ({e})") from None
    if have < need:
        raise InvalidInputError(f"{p}: truncated NIfTI: {have} of the {need} bytes its header declares")


def write_volume(volume: Volume, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write NIfTI atomically (temporary file, then rename)."""
    p = Path(path)
    if not p.name.endswith(NIFTI_SUFFIXES):
        raise InvalidInputError(f"{p}: output must end in .nii or .nii.gz")
    with atomic_output(p, suffix=".nii.gz" if p.name.endswith(".nii.gz") else ".nii") as tmp:
        sitk.WriteImage(to_sitk(volume), str(tmp), useCompression=compress)
    return p


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # ITK messages put the useful sentence last, after the file/line banner.
    return lines[-1] if lines else type(e).__name__
