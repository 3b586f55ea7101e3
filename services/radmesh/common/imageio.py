"""Reading and writing volumes: NIfTI files and DICOM series, through SimpleITK.

SimpleITK hands back LPS geometry and (z, y, x) arrays for both formats, so the
rest of radmesh never sees a RAS affine or a DICOM tag. Files are written to a
temporary name in the same folder and renamed, so a failed write never leaves a
half-written file behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radmesh.common.errors import InvalidInputError
from radmesh.common.fileio import atomic_output
from radmesh.common.volume import Geometry, Volume

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


def read_volume(path: str | os.PathLike) -> Volume:
    """A NIfTI file or a folder of DICOM slices → Volume. Errors name the file and the problem."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file or folder")
    if p.is_dir():
        return _read_dicom_folder(p)
    if not p.name.endswith(NIFTI_SUFFIXES):
        raise InvalidInputError(f"{p}: not a NIfTI file (.nii or .nii.gz) or a DICOM folder")
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as e:
        raise InvalidInputError(f"{p}: cannot be read as NIfTI ({_first_line(e)})") from None
    return from_sitk(image)


def _read_dicom_folder(folder: Path) -> Volume:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InvalidInputError(f"{folder}: no DICOM series found in this folder")
    # The series with the most slices is the one a reader of the study means.
    files = max((reader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len)
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise InvalidInputError(f"{folder}: DICOM series cannot be read ({_first_line(e)})") from None
    return from_sitk(image)


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
