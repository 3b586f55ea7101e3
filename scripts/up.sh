#!/usr/bin/env bash
# The whole product locally on its embedded defaults, with a sample study.
# Installs what it needs, then runs `radmesh up` (Ctrl-C stops everything).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/radmesh" up "$@"
