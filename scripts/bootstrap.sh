#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs radmesh into it. Sourced by up.sh and
# test.sh; safe to run again (pip skips what is already there).
#   RADMESH_EXTRAS=dev   also install the test tools and pyradiomics (the reference
#                        the tests and benchmarks compare against)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RADMESH_VENV:-$ROOT/.venv}"

find_python() {
  for p in python3.11 "$HOME/.pyenv/versions/3.11.7/bin/python3" python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      command -v "$p"; return 0
    fi
  done
  return 1
}

# dciodvfy (Debian dicom3tools) checks the DICOM files the tests write; idempotent, sudo only when not root.
if ! command -v dciodvfy >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y -q dicom3tools >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dicom3tools >/dev/null; } \
    || echo "bootstrap: could not install dicom3tools (dciodvfy); the DICOM conformance tests will fail" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python)" || { echo "radmesh needs Python 3.11 (python3.11 not found)" >&2; exit 1; }
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel
if [ "${RADMESH_EXTRAS:-}" = "dev" ]; then
  "${PIP[@]}" install -e "$ROOT[dev]"
  # pyradiomics 3.0.1 ships no wheel for 3.11: build it against the installed numpy.
  if ! "$VENV/bin/python" -c 'import radiomics' 2>/dev/null; then
    "${PIP[@]}" install versioneer scikit-build
    "${PIP[@]}" install --no-build-isolation pyradiomics==3.0.1
  fi
else
  "${PIP[@]}" install -e "$ROOT"
fi
# Triton: the tritonserver binary (nvidia-pytriton wheel, Triton 2.51 with the Python backend)
# and its gRPC client. Both with --no-deps: nvidia-pytriton declares numpy<2 (for its Python
# API, which radmesh does not use; our model.py avoids the stub's numpy bridge, see
# model_repository/universal_seg/1/model.py) and tritonclient declares protobuf<7; either
# would make pip downgrade what radmesh runs on (numpy 2, protobuf 7, which tritonclient's
# generated code works with). Their runtime needs, listed from `pip show tritonclient`
# (grpcio and numpy come with radmesh itself), are installed explicitly.
"${PIP[@]}" install --no-deps tritonclient==2.73.0 nvidia-pytriton==0.7.0
"${PIP[@]}" install "python-rapidjson>=0.9.1" "urllib3>=2.0.7" "ml-dtypes<=0.5.4" "packaging>=14.1"
