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


def test_serving_benchmark_runs_and_prints_the_ratios():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_serving.py"), "--size", "96", "--slices", "40",
                        "--spacing-mm", "4,4,5", "--fast", "--repeat", "1", "--clients", "1,2", "--upload-mib", "32",
                        "--window-calls", "1"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "label maps equal (served vs in-process): True" in r.stdout
    assert "served / in-process:" in r.stdout and "upload on loopback:" in r.stdout
    assert "2 client(s):" in r.stdout


def test_assistant_benchmark_runs_served_and_in_process():
    import random

    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_assistant.py"), "--size", "96", "--slices", "40",
                        "--spacing-mm", "4,4,5", "--port-offset", str(random.randrange(3000, 14000, 10))],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("first event:") == 2 and "served / in-process, first answer:" in r.stdout
    assert r.stdout.count("uploaded 0 bytes") == 2  # the follow-ups, served and in-process


def test_published_backbone_benchmark_runs_and_prints_the_ratio():
    # the shipped backbone only: the published ones each add minutes of export here (timed in docs/benchmarks.md)
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_published.py"), "--only", "compact",
                        "--repeat", "1"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unet_compact (shipped)" in r.stdout and "ORT/PyTorch" in r.stdout


def test_phantom_benchmark_runs_and_prints_the_ratio():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_phantom.py"), "--repeat", "1", "--size", "96",
                        "--slices", "40"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "v2 / v1" in r.stdout
