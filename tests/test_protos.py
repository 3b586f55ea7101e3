"""The contracts: generated code is current, and every field documents itself."""

import re
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pool

ROOT = Path(__file__).resolve().parent.parent
PROTOS = sorted((ROOT / "proto" / "radmesh" / "v1").glob("*.proto"))


def test_generated_code_is_current():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_all_six_contracts_exist_in_package_radmesh_v1():
    assert {p.stem for p in PROTOS} == {"common", "text", "segmentation", "measurement", "report", "assistant"}
    for p in PROTOS:
        assert re.search(r"^package radmesh\.v1;$", p.read_text(), re.M), p.name


FIELD = re.compile(r"^\s*(repeated\s+)?[\w.]+\s+\w+\s*=\s*\d+;")
ENUM_VALUE = re.compile(r"^\s*[A-Z0-9_]+\s*=\s*\d+;")


def test_every_field_has_a_comment():
    """Each field carries its meaning (and unit) on its own line or in the comment just above it."""
    missing = []
    for p in PROTOS:
        lines = p.read_text().splitlines()
        for i, line in enumerate(lines):
            if not FIELD.match(line) or ENUM_VALUE.match(line):
                continue
            if "//" not in line and not lines[i - 1].strip().startswith("//"):
                missing.append(f"{p.name}:{i + 1}: {line.strip()}")
    assert not missing, "undocumented fields:\n" + "\n".join(missing)


def test_generated_modules_import_and_register_services():
    from radmesh.v1 import (assistant_pb2, measurement_pb2, report_pb2,  # noqa: F401
                            segmentation_pb2, text_pb2)

    pool = descriptor_pool.Default()
    for name in ("TextService", "SegmentationService", "MeasurementService", "ReportService", "AssistantService"):
        assert pool.FindServiceByName(f"radmesh.v1.{name}")
