#!/usr/bin/env python3
"""Generate the Python gRPC code for proto/radmesh/v1 into services/radmesh/v1.

    python scripts/gen_protos.py          # regenerate
    python scripts/gen_protos.py --check  # exit 1 if the committed code is stale

The only way services/radmesh/v1 is written. grpcio-tools is pinned in
pyproject.toml so regeneration is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "services"
PACKAGE_DIR = Path("radmesh") / "v1"
INIT = '"""Generated from proto/radmesh/v1 by scripts/gen_protos.py. Do not edit."""\n'


def generate(out_root: Path) -> list[Path]:
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    # protoc resolves the relative proto paths against -I roots; run from the proto root.
    cwd = os.getcwd()
    os.chdir(PROTO_ROOT)
    try:
        rc = protoc.main(args)
    finally:
        os.chdir(cwd)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    (out_root / PACKAGE_DIR / "__init__.py").write_text(INIT)
    return sorted((out_root / PACKAGE_DIR).iterdir())


def stale_files() -> list[str]:
    """Names of generated files that differ from (or are missing in) the tree."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        (fresh / PACKAGE_DIR).mkdir(parents=True)
        generate(fresh)
        committed = OUT_ROOT / PACKAGE_DIR
        fresh_names = {p.name for p in (fresh / PACKAGE_DIR).iterdir() if p.is_file()}
        have_names = {p.name for p in committed.iterdir() if p.is_file()} if committed.exists() else set()
        diffs = sorted(fresh_names ^ have_names)
        for name in sorted(fresh_names & have_names):
            if not filecmp.cmp(fresh / PACKAGE_DIR / name, committed / name, shallow=False):
                diffs.append(name)
        return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed code is current")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("generated code is stale; run python scripts/gen_protos.py: " + ", ".join(stale), file=sys.stderr)
            return 1
        print("generated code is current")
        return 0
    target = OUT_ROOT / PACKAGE_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for p in generate(OUT_ROOT):
        print(p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
