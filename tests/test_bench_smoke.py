"""The benchmarks run (small sizes; their timings are read in docs/benchmarks.md, not asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_measurement_benchmark_runs_and_prints_the_ratio():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_measurement.py"), "--size", "128",
                        "--slices", "60", "--repeat", "1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "speed-up vs featureextractor" in r.stdout
    assert "Liver Tumor" in r.stdout
