"""The `radmesh` command as a user runs it: real processes, real files."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radmesh.common.imageio import read_volume, write_volume
from radmesh.common.volume import Geometry, Volume


def radmesh(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radmesh.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "RADMESH_DEBUG": ""})


def assert_one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("radmesh: error:"), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


def test_version():
    r = radmesh("version")
    assert r.returncode == 0 and r.stdout.startswith("radmesh ")


def test_phantom_then_measure(tmp_path):
    out = tmp_path / "case"
    r = radmesh("phantom", "--seed", "3", "--out", str(out), "--size", "160", "--spacing-mm", "1.5,1.5,2.5",
                "--lesions", "27,28", "--quiet")
    assert r.returncode == 0, r.stderr
    for name in ("ct.nii.gz", "labels.nii.gz", "pancreas_subregions.nii.gz", "truth.json"):
        assert (out / name).is_file()
    truth = json.loads((out / "truth.json").read_text())
    assert {les["class_index"] for les in truth["lesions"]} == {27, 28}

    r = radmesh("measure", "--ct", str(out / "ct.nii.gz"), "--mask", str(out / "labels.nii.gz"), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    by_class = {s["class_index"]: s for s in result["structures"]}
    tumor = by_class[28]["lesions"][0]
    for key in ("volume_ml", "max_diameter_mm", "long_axis_mm", "short_axis_mm", "centroid_mm", "hu_mean",
                "hu_std", "location"):
        assert key in tumor
    assert tumor["location"].startswith("pancreatic")
    assert by_class[6]["volume_ml"] > 500  # a liver, in millilitres

    r = radmesh("measure", "--ct", str(out / "ct.nii.gz"), "--mask", str(out / "labels.nii.gz"),
                "--classes", "pancreas tumor")
    assert r.returncode == 0, r.stderr
    assert "Pancreas Tumor" in r.stdout and "mL" in r.stdout and "Liver " not in r.stdout


@pytest.fixture(scope="module")
def small_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    g = Geometry((10, 20, 20), (1.0, 1.0, 2.0))
    ct = np.full(g.shape_zyx, 50, np.int16)
    lab = np.zeros(g.shape_zyx, np.uint8)
    lab[2:6, 5:12, 5:12] = 1
    write_volume(Volume(ct, g), d / "ct.nii.gz")
    write_volume(Volume(lab, g), d / "labels.nii.gz")
    return d


def test_measure_bad_inputs_exit_with_one_line(small_case, tmp_path):
    ct, lab = str(small_case / "ct.nii.gz"), str(small_case / "labels.nii.gz")
    assert_one_line_error(radmesh("measure", "--ct", str(tmp_path / "nope.nii.gz"), "--mask", lab),
                          "no such file")
    other = tmp_path / "other.nii.gz"
    write_volume(Volume(np.zeros((10, 20, 21), np.uint8), Geometry((10, 20, 21), (1.0, 1.0, 2.0))), other)
    assert_one_line_error(radmesh("measure", "--ct", ct, "--mask", str(other)), "grid")
    floats = tmp_path / "float.nii.gz"
    v = read_volume(lab)
    write_volume(Volume(v.array.astype(np.float32) * 0.5, v.geometry), floats)
    assert_one_line_error(radmesh("measure", "--ct", ct, "--mask", str(floats)), "integer")
    assert_one_line_error(radmesh("measure", "--ct", ct, "--mask", lab, "--classes", "40"), "40")
    assert_one_line_error(radmesh("measure", "--ct", ct, "--mask", lab, "--classes", "brain"), "brain")
    empty = tmp_path / "empty.nii.gz"
    write_volume(Volume(np.zeros_like(v.array), v.geometry), empty)
    assert_one_line_error(radmesh("measure", "--ct", ct, "--mask", str(empty)), "empty")
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    assert_one_line_error(radmesh("measure", "--ct", ct, "--mask", str(corrupt)), "corrupt.nii.gz")
    assert_one_line_error(radmesh("measure", "--ct", ct, "--mask", lab, "--server", "127.0.0.1:1",
                                  "--timeout-s", "3"), "unavailable")


def test_truncated_nifti_is_refused_not_zero_filled(small_case, tmp_path):
    """A cut .nii.gz (an interrupted copy) or .nii is refused by name; SimpleITK alone would fill the
    missing voxels with 0. A complete file whose gzip trailer is not the header's length (bytes padded
    after the data) still reads."""
    ct, lab = small_case / "ct.nii.gz", str(small_case / "labels.nii.gz")
    data = ct.read_bytes()
    for name, blob in (("half.nii.gz", data[:len(data) // 2]), ("short.nii.gz", data[:-9]),
                       ("half.nii", gzip.decompress(data)[:len(gzip.decompress(data)) // 2])):
        cut = tmp_path / name
        cut.write_bytes(blob)
        assert_one_line_error(radmesh("measure", "--ct", str(cut), "--mask", lab), name)
    padded = tmp_path / "padded.nii.gz"
    padded.write_bytes(gzip.compress(gzip.decompress(data) + b"\0" * 16))
    assert np.array_equal(read_volume(padded).array, read_volume(ct).array)


def test_measure_writes_out_file_atomically(small_case, tmp_path):
    out = tmp_path / "m.json"
    r = radmesh("measure", "--ct", str(small_case / "ct.nii.gz"), "--mask", str(small_case / "labels.nii.gz"),
                "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["structures"][0]["name"] == "Spleen"
    assert not list(tmp_path.glob(".partial-*"))


def test_phantom_bad_flags(tmp_path):
    assert_one_line_error(radmesh("phantom", "--seed", "1", "--out", str(tmp_path), "--spacing-mm", "1,1"),
                          "--spacing-mm")
    assert_one_line_error(radmesh("phantom", "--seed", "1", "--out", str(tmp_path), "--lesions", "6"), "6")
