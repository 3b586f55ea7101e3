"""The README's first command: the mesh on its defaults answers the sample study."""

import os
import subprocess
import sys


def test_up_serves_and_answers_the_sample_study(tmp_path):
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "up", "--workdir", str(tmp_path), "--exit-after-demo"],
                       capture_output=True, text=True, timeout=900, env={**os.environ})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "measurement  serving on 127.0.0.1:50054" in r.stdout
    assert "text         serving on 127.0.0.1:50052" in r.stdout
    assert "triton       serving on 127.0.0.1:8001" in r.stdout
    assert "segmentation serving on 127.0.0.1:50053" in r.stdout
    assert "report       serving on 127.0.0.1:50055" in r.stdout
    assert "Pancreas Tumor; actions segment, measure" in r.stdout
    assert "  Pancreas Tumor: " in r.stdout and " mL" in r.stdout       # the segmentation service answered
    assert "FINDINGS" in r.stdout and "IMPRESSION" in r.stdout        # the report service answered
    assert (tmp_path / "sample-seed0" / "ct.nii.gz").is_file()
    # the shipped model may find nothing on the sample (then only the NIfTI is written, and said so)
    dicom = () if "nothing was found" in r.stdout else ("seg.dcm", "sr.dcm")
    for name in ("report.json", "report.txt", "labels.nii.gz", *dicom):
        assert (tmp_path / "demo" / name).stat().st_size > 0, name
    for name in ("measurement", "text", "segmentation", "report", "triton"):
        assert (tmp_path / "logs" / f"{name}.log").is_file(), name
