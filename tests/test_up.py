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
    assert "Pancreas Tumor; actions segment, measure" in r.stdout
    assert " mL" in r.stdout and "Liver" in r.stdout
    assert (tmp_path / "sample-seed0" / "ct.nii.gz").is_file()
    assert (tmp_path / "logs" / "measurement.log").is_file()
