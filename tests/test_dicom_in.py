"""DICOM CT in: series written from phantoms read back with their geometry and HU; what is refused and why.

Tolerances: the writer stores whole HU as int16 with RescaleIntercept −1024, so
int16 phantoms come back bit-identical; positions and direction cosines travel as
DS strings of ≤ 16 characters, so geometry comes back within 1e-6 mm (every
voxel centre, :meth:`Geometry.matches`) and direction cosines within 1e-9.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicom_conformance import dciodvfy_errors
from radmesh.common.errors import InvalidInputError, ResourceExhaustedError
from radmesh.common.imageio import read_ct, read_volume, write_volume
from radmesh.common.volume import Geometry, Volume
from radmesh.dicom.series import DicomSource, read_dicom_series
from radmesh.dicom.write_ct import STUDY_KEYS, write_ct_series
from radmesh.measurement.core import measure
from radmesh.phantom.generator import PhantomConfig, generate

GEOMETRY_TOL_MM = 1e-6
DIRECTION_TOL = 1e-9
STUDY = {"patient_name": "Doe^Jane", "patient_id": "P-0001", "patient_sex": "F", "patient_birth_date": "19700101",
         "study_date": "20240102", "accession_number": "ACC42", "study_description": "CT abdomen"}


def _phantom(oblique: bool):
    return generate(11, PhantomConfig(in_plane_size=64, spacing_xyz_mm=(5.0, 5.5, 7.0), slices=32,
                                      oblique=oblique, lesions=(27, 28)))


@pytest.fixture(scope="module")
def axial():
    return _phantom(False)


@pytest.fixture(scope="module")
def oblique():
    ph = _phantom(True)
    assert ph.ct.geometry.is_oblique
    return ph


def assert_same_volume(a: Volume, b: Volume, tol_mm: float = GEOMETRY_TOL_MM,
                       direction_tol: float = DIRECTION_TOL) -> None:
    """Same shape, every voxel centre within ``tol_mm``, same direction, identical values."""
    assert a.geometry.shape_zyx == b.geometry.shape_zyx
    assert a.geometry.matches(b.geometry, tol_mm=tol_mm), (a.geometry, b.geometry)
    np.testing.assert_allclose(a.geometry.direction, b.geometry.direction, atol=direction_tol)
    np.testing.assert_allclose(a.geometry.spacing_xyz_mm, b.geometry.spacing_xyz_mm, rtol=1e-6)
    assert np.array_equal(a.array, b.array)


def _ipp_along_normal(headers) -> np.ndarray:
    iop = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    n = np.cross(iop[:3], iop[3:])
    return np.array([np.array([float(v) for v in h.ImagePositionPatient]) @ n for h in headers])


# ---- geometry and values ---------------------------------------------------------------

def test_axial_series_reads_back_identical(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "ct", STUDY)
    assert len(paths) == 32 and all(p.is_file() for p in paths)
    assert dciodvfy_errors(paths[0]) == []
    src = read_dicom_series(tmp_path / "ct")
    assert isinstance(src, DicomSource)
    assert_same_volume(src.volume, axial.ct)
    # HU dtype matches what the NIfTI path returns for the same CT (int16 for int16 CT)
    nifti = read_volume(write_volume(axial.ct, tmp_path / "ct.nii.gz"))
    assert src.volume.array.dtype == nifti.array.dtype == np.int16
    assert_same_volume(src.volume, nifti, tol_mm=1e-3, direction_tol=1e-6)  # NIfTI keeps float32 offsets
    # headers: one per slice, z order, no pixels
    assert len(src.headers) == 32
    assert all("PixelData" not in h for h in src.headers)
    assert np.all(np.diff(_ipp_along_normal(src.headers)) > 0)
    # study: exactly the StudyMetadata keys, values from the headers
    assert set(src.study) == set(STUDY_KEYS)
    for k, v in STUDY.items():
        assert src.study[k] == v
    assert src.study["series_instance_uid"] == src.headers[0].SeriesInstanceUID
    assert src.study["frame_of_reference_uid"] == src.headers[0].FrameOfReferenceUID
    assert src.chosen.startswith(f"series {src.study['series_instance_uid']} (CT, 32 slices")
    assert "the only series" in src.chosen


def test_oblique_series_keeps_its_orientation(oblique, tmp_path):
    paths = write_ct_series(oblique.ct, tmp_path / "ct")
    assert dciodvfy_errors(paths[len(paths) // 2]) == []
    src = read_dicom_series(tmp_path / "ct")
    assert src.volume.geometry.is_oblique
    assert_same_volume(src.volume, oblique.ct)


@pytest.mark.parametrize("oblique_grid", [False, True])
def test_written_series_agrees_with_simpleitk(axial, oblique, tmp_path, oblique_grid):
    """An independent reader (ITK/GDCM) sees the same grid: PixelSpacing order, orientation and positions."""
    import SimpleITK as sitk

    from radmesh.common.imageio import from_sitk

    ph = oblique if oblique_grid else axial
    write_ct_series(ph.ct, tmp_path / "ct", slice_order="shuffled")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    itk = from_sitk(reader.Execute())
    assert itk.geometry.matches(ph.ct.geometry, tol_mm=1e-4)
    np.testing.assert_allclose(itk.geometry.spacing_xyz_mm, (5.0, 5.5, 7.0), rtol=1e-6)
    np.testing.assert_array_equal(itk.array, ph.ct.array)


@pytest.mark.parametrize("how", ["reverse_files", "shuffled", "renamed_nested"])
def test_file_order_and_names_do_not_matter(oblique, tmp_path, how):
    folder = tmp_path / "ct"
    if how == "reverse_files":
        paths = write_ct_series(oblique.ct, folder, reverse_files=True)
        assert pydicom.dcmread(paths[0]).InstanceNumber == 32  # z = 0 is the last file
    elif how == "shuffled":
        write_ct_series(oblique.ct, folder, slice_order="shuffled", shuffle_seed=3)
    else:  # random names in nested folders, as some PACS exports look
        paths = write_ct_series(oblique.ct, tmp_path / "flat", slice_order="shuffled")
        rng = random.Random(5)
        for p in paths:
            dest = folder / f"d{rng.randrange(3)}" / f"{rng.getrandbits(40):010x}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(p, dest)
    assert_same_volume(read_dicom_series(folder).volume, oblique.ct)


def test_reversed_slice_direction_is_the_same_physical_volume(oblique, tmp_path):
    """A volume stored top-down (z column = −normal, left-handed) reads back as the same physical volume."""
    g = oblique.ct.geometry
    nz = g.shape_zyx[0]
    last = g.to_lps(np.array([[nz - 1, 0, 0]]))[0]
    d = g.direction.copy()
    d[:, 2] *= -1
    flipped = Volume(np.ascontiguousarray(oblique.ct.array[::-1]),
                     Geometry(g.shape_zyx, g.spacing_xyz_mm, tuple(last), d))
    # the same voxel centres carry the same values
    for k, j, i in [(0, 0, 0), (5, 17, 40), (31, 63, 2)]:
        np.testing.assert_allclose(flipped.geometry.to_lps(np.array([[nz - 1 - k, j, i]])),
                                   g.to_lps(np.array([[k, j, i]])), atol=1e-9)
    write_ct_series(flipped, tmp_path / "ct")
    src = read_dicom_series(tmp_path / "ct")
    assert np.linalg.det(src.volume.geometry.direction) == pytest.approx(1.0)
    assert_same_volume(src.volume, oblique.ct)


def test_rescale_slope_and_intercept_are_applied(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "a")
    stored = [pydicom.dcmread(p).pixel_array.astype(np.float64) for p in paths]

    def rewrite(slope: str, intercept: str, folder: Path) -> None:
        folder.mkdir()
        for n, p in enumerate(paths):
            ds = pydicom.dcmread(p)
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
            ds.save_as(folder / f"{n}.dcm")

    rewrite("2", "-3000", tmp_path / "b")
    v = read_dicom_series(tmp_path / "b").volume
    assert v.array.dtype == np.int16
    np.testing.assert_array_equal(v.array, np.stack(stored) * 2 - 3000)

    rewrite("0.5", "-10.25", tmp_path / "c")
    v = read_dicom_series(tmp_path / "c").volume
    assert v.array.dtype == np.float32
    np.testing.assert_allclose(v.array, np.stack(stored) * 0.5 - 10.25, atol=1e-3)

    rewrite("0", "-1024", tmp_path / "d")
    with pytest.raises(InvalidInputError, match="RescaleSlope 0.0 / RescaleIntercept -1024.0 are not usable"):
        read_dicom_series(tmp_path / "d")


def test_zip_of_a_series(oblique, tmp_path):
    write_ct_series(oblique.ct, tmp_path / "export" / "study" / "series1", slice_order="shuffled")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((tmp_path / "export").rglob("*")):
            zf.write(p, p.relative_to(tmp_path / "export"))
    src = read_dicom_series(archive)
    assert_same_volume(src.volume, oblique.ct)
    vol, source = read_ct(archive)
    assert source is not None and source.study == src.study
    assert_same_volume(read_volume(archive), oblique.ct)


# ---- choosing a series --------------------------------------------------------------------

def _other_object(folder: Path, modality: str, sop_class: str, name: str) -> None:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / name, enforce_file_format=True)


def test_the_ct_series_with_most_slices_is_chosen_and_reported(axial, tmp_path):
    folder = tmp_path / "study"
    big = write_ct_series(axial.ct, folder / "a", series_number=3)
    small_geometry = Geometry((2, 64, 64), axial.ct.geometry.spacing_xyz_mm, axial.ct.geometry.origin_lps_mm)
    small = write_ct_series(Volume(axial.ct.array[:2].copy(), small_geometry), folder / "b", series_number=1)
    _other_object(folder / "c", "SR", "1.2.840.10008.5.1.4.1.1.88.11", "report.dcm")
    (folder / "notes.txt").write_text("not DICOM")
    src = read_dicom_series(folder)
    big_uid, small_uid = (pydicom.dcmread(p[0]).SeriesInstanceUID for p in (big, small))
    assert src.study["series_instance_uid"] == big_uid
    assert src.volume.geometry.shape_zyx == (32, 64, 64)
    assert src.chosen.startswith(f"series {big_uid} (CT, 32 slices")
    assert f"chosen of 3 series; skipped: CT {small_uid} (2 slices), SR (1 file)" in src.chosen
    assert "1 non-DICOM file ignored" in src.chosen


def test_localizer_in_the_series_is_left_out(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "ct")
    scout = pydicom.dcmread(paths[0])
    scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    scout.save_as(tmp_path / "ct" / "scout.dcm")
    src = read_dicom_series(tmp_path / "ct")
    assert_same_volume(src.volume, axial.ct)
    assert "1 localizer image left out" in src.chosen


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEGLSLossless"])  # encoders present with highdicom
def test_compressed_series_reads_back_identical(axial, tmp_path, syntax):
    paths = write_ct_series(axial.ct, tmp_path / "ct")
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.compress(getattr(pydicom.uid, syntax))
        ds.save_as(p)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == getattr(pydicom.uid, syntax)
    assert_same_volume(read_dicom_series(tmp_path / "ct").volume, axial.ct)


def test_jpeg_lossless_decoder_is_installed():
    """JPEG Lossless (process 14, SV1) is how PACS usually compress CT; pylibjpeg-libjpeg decodes it."""
    from pydicom.pixels.decoders import JPEGLosslessDecoder, JPEGLosslessSV1Decoder

    assert JPEGLosslessDecoder.is_available and JPEGLosslessSV1Decoder.is_available


def test_truncated_slice_is_a_clear_error(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "ct")
    raw = paths[5].read_bytes()
    paths[5].write_bytes(raw[: len(raw) - 3000])
    with pytest.raises(InvalidInputError, match=r"CT0006\.dcm"):
        read_dicom_series(tmp_path / "ct")


def test_non_ct_is_refused_naming_the_modality(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "mr")
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.save_as(p)
    with pytest.raises(InvalidInputError, match="the DICOM series is MR; radmesh reads CT only"):
        read_dicom_series(tmp_path / "mr")
    real_mr = tmp_path / "real_mr"
    real_mr.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), real_mr / "mr.dcm")  # a real MR slice shipped with pydicom
    with pytest.raises(InvalidInputError, match="the DICOM series is MR; radmesh reads CT only"):
        read_volume(real_mr)
    _other_object(tmp_path / "mixed", "SEG", "1.2.840.10008.5.1.4.1.1.66.4", "seg.dcm")
    _other_object(tmp_path / "mixed", "SR", "1.2.840.10008.5.1.4.1.1.88.34", "sr.dcm")
    with pytest.raises(InvalidInputError, match="the DICOM series are SEG, SR; radmesh reads CT only"):
        read_dicom_series(tmp_path / "mixed")


def test_empty_and_non_dicom_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no files"):
        read_dicom_series(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.dcm").write_bytes(b"\x00" * 300)
    (tmp_path / "text" / "b.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="no DICOM images found"):
        read_dicom_series(tmp_path / "text")
    with pytest.raises(InvalidInputError, match="no such file"):
        read_dicom_series(tmp_path / "missing")


# ---- geometry refused --------------------------------------------------------------------

def test_missing_slice_is_refused(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "ct")
    paths[12].unlink()
    with pytest.raises(InvalidInputError, match="slice spacing is not uniform"):
        read_dicom_series(tmp_path / "ct")


def test_repeated_positions_are_refused(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "ct")
    ds = pydicom.dcmread(paths[7])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "ct" / "second_phase.dcm")
    with pytest.raises(InvalidInputError, match="slice position repeat.*more than one volume"):
        read_dicom_series(tmp_path / "ct")


def test_gantry_tilt_is_refused(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "ct")
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.6 * k, z]  # sheared stack, ≈ 4.9° tilt
        ds.save_as(p)
    with pytest.raises(InvalidInputError, match="drift .* in-plane .*gantry tilt"):
        read_dicom_series(tmp_path / "ct")


def test_small_position_rounding_is_tolerated(axial, tmp_path):
    paths = write_ct_series(axial.ct, tmp_path / "ct")
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient = [f"{float(v):.1f}" for v in ds.ImagePositionPatient]
        ds.save_as(p)
    v = read_dicom_series(tmp_path / "ct").volume
    assert v.geometry.matches(axial.ct.geometry, tol_mm=0.1)
    assert np.array_equal(v.array, axial.ct.array)


# ---- zip safety --------------------------------------------------------------------------

def test_corrupt_zip_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(InvalidInputError, match="not a readable zip archive"):
        read_dicom_series(bad)
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", os.urandom(4096) * 8)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InvalidInputError, match="zip"):
        read_dicom_series(truncated)


def test_zip_bomb_is_refused(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("slice.dcm", b"\x00" * (32 << 20))  # 32 MiB of zeros, ≈ 32 KiB compressed
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ResourceExhaustedError, match="unpacks to 32.0 MiB, more than the 4.0 MiB limit"):
        read_dicom_series(bomb, max_zip_bytes=4 << 20)
    monkeypatch.setenv("RADMESH_MAX_DICOM_ZIP_MB", "4")
    with pytest.raises(ResourceExhaustedError, match="zip bomb"):
        read_volume(bomb)


def test_zip_path_traversal_is_refused(tmp_path):
    evil = tmp_path / "inner" / "evil.zip"
    evil.parent.mkdir()
    for name in ("../escaped.dcm", "/etc/escaped.dcm", "a/../../escaped.dcm", "C:\\escaped.dcm"):
        with zipfile.ZipFile(evil, "w") as zf:
            zf.writestr("ok.dcm", b"x")
            zf.writestr(name, b"payload")
        with pytest.raises(InvalidInputError, match="path traversal"):
            read_dicom_series(evil)
    assert not list(tmp_path.rglob("escaped.dcm"))


# ---- pydicom's real CT slice -------------------------------------------------------------

def test_pydicom_ct_small_is_read_as_one_slice(tmp_path):
    """CT_small.dcm is one real CT slice: read, thickness from SpacingBetweenSlices (then SliceThickness)."""
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    src = read_dicom_series(path)
    g = src.volume.geometry
    assert g.shape_zyx == (1, 128, 128)
    assert g.spacing_xyz_mm == pytest.approx((0.661468, 0.661468, 5.0))
    assert g.origin_lps_mm == pytest.approx((-158.135803, -179.035797, -75.699997))
    np.testing.assert_array_equal(src.volume.array[0], ds.pixel_array.astype(np.int32) * 1 - 1024)
    assert src.volume.array.dtype == np.int16
    assert src.study["patient_id"] == "1CT1" and src.study["patient_name"] == "CompressedSamples^CT1"
    assert "one slice, thickness 5 mm from SpacingBetweenSlices" in src.chosen
    # the same through read_volume (a single DICOM file) and from a folder
    assert read_volume(path).geometry.shape_zyx == (1, 128, 128)
    folder = tmp_path / "one"
    folder.mkdir()
    del ds.SpacingBetweenSlices
    ds.SliceThickness = "2.5"
    ds.save_as(folder / "x.dcm")
    assert read_dicom_series(folder).volume.geometry.spacing_xyz_mm[2] == 2.5
    del ds.SliceThickness
    ds.save_as(folder / "x.dcm")
    with pytest.raises(InvalidInputError, match="single CT slice without SpacingBetweenSlices or SliceThickness"):
        read_dicom_series(folder)


# ---- every entry point takes DICOM -----------------------------------------------------------

def test_read_ct_returns_no_source_for_nifti(axial, tmp_path):
    path = write_volume(axial.ct, tmp_path / "ct.nii.gz")
    vol, source = read_ct(path)
    assert source is None
    assert_same_volume(vol, axial.ct, tol_mm=1e-3, direction_tol=1e-6)


def test_cli_measure_on_a_dicom_folder(axial, tmp_path):
    write_ct_series(axial.ct, tmp_path / "dicom", slice_order="shuffled")
    mask = write_volume(axial.labels, tmp_path / "labels.nii.gz")
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "measure", "--ct", str(tmp_path / "dicom"),
                        "--mask", str(mask), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)   # stdout is the JSON alone; which series was read goes to stderr
    assert "radmesh: DICOM series " in r.stderr and "(CT, " in r.stderr and "chosen, the only series" in r.stderr
    want = measure(axial.ct, axial.labels).to_dict()
    assert [s["class_index"] for s in got["structures"]] == [s["class_index"] for s in want["structures"]]
    for a, b in zip(got["structures"], want["structures"]):
        assert a["voxel_count"] == b["voxel_count"]
        assert a["hu_mean"] == pytest.approx(b["hu_mean"])
        assert [les["max_diameter_mm"] for les in a["lesions"]] == \
            pytest.approx([les["max_diameter_mm"] for les in b["lesions"]])

    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "measure", "--ct", str(tmp_path / "nothing-here"),
                        "--mask", str(mask)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("radmesh: error:") and "no such file" in r.stderr
