"""`radmesh segment` and `radmesh export` as a user runs them, with the shipped weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from radmesh.common.imageio import read_volume
from radmesh.model.evaluate import default_weights_path

pytestmark = pytest.mark.skipif(not default_weights_path().is_file(),
                                reason="reference weights are not in this checkout")


def run(*args, env):
    return subprocess.run([sys.executable, "-m", "radmesh.cli", *args], capture_output=True, text=True,
                          timeout=900, env=env)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {**os.environ, "RADMESH_CACHE": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def case(tmp_path_factory, env):
    out = tmp_path_factory.mktemp("case")
    r = run("phantom", "--seed", "5", "--out", str(out), "--size", "192", "--spacing-mm", "2,2,2.5",
            "--lesions", "28", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    return out


def test_segment_from_a_prompt_writes_labels_on_the_ct_grid(case, env, tmp_path):
    out = tmp_path / "seg"
    r = run("segment", "--ct", str(case / "ct.nii.gz"), "--prompt", "segment the liver and the pancreatic tumor",
            "--out", str(out), "--fast", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    labels, ct = read_volume(out / "labels.nii.gz"), read_volume(case / "ct.nii.gz")
    assert labels.geometry.matches(ct.geometry) and labels.array.dtype.kind == "u"
    # the pancreas comes with the pancreatic tumour: its host, which places the tumour
    assert set(int(v) for v in set(labels.array.ravel().tolist())) <= {0, 6, 28, 11}
    summary = json.loads((out / "segmentation.json").read_text())
    assert [(c["class_index"], c["host_only"]) for c in summary["classes"]] == [(6, False), (28, False), (11, True)]
    assert summary["intent"]["targets"][0]["class_index"] in (6, 28)
    assert summary["model"]["runtime"] == "onnxruntime"
    # the shipped weights' own post-processing values were applied
    assert summary["model"]["postprocess_calibration"] == "radmesh_unet_phantom.calibration.json"


def test_segment_refusals_are_one_line(case, env, tmp_path):
    r = run("segment", "--ct", str(case / "ct.nii.gz"), "--prompt", "segment the brain tumour", "--out",
            str(tmp_path / "x"), env=env)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "brain" in r.stderr
    r = run("segment", "--ct", str(case / "ct.nii.gz"), "--classes", "colon", "--out", str(tmp_path / "y"), env=env)
    assert r.returncode == 3 and "Colon" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not (tmp_path / "y" / "labels.nii.gz").exists()


def test_export_writes_a_verified_graph(env, tmp_path):
    r = run("export", "--out", str(tmp_path / "m.onnx"), env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.onnx").is_file() and "max |logit difference|" in r.stdout


def test_min_lesion_volume_is_passed_on_and_checked(case, env, tmp_path):
    r = run("segment", "--ct", str(case / "ct.nii.gz"), "--classes", "28", "--min-lesion-mm3", "0", "--out",
            str(tmp_path / "z"), env=env)
    assert r.returncode == 2 and "--min-lesion-mm3" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    big = tmp_path / "big"
    r = run("segment", "--ct", str(case / "ct.nii.gz"), "--classes", "28", "--min-lesion-mm3", "1e9", "--out",
            str(big), "--fast", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((big / "segmentation.json").read_text())
    tumour = next(c for c in summary["classes"] if c["class_index"] == 28)
    assert tumour["voxel_count"] == 0 and not tumour["found"]          # no lesion is a cubic metre
