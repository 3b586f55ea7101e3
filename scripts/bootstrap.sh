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
