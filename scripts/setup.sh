#!/usr/bin/env bash
# Creates .venv (if missing) and installs action_jax (editable) with the extras named in $1
# (e.g. "test" or "export,decord"). Where an NVIDIA GPU answers nvidia-smi it adds the cuda12
# extra (JAX's CUDA 12 build); ACTION_JAX_CPU=1 keeps the CPU build. PYTHON picks the
# interpreter that creates the venv (python3 by default; 3.11 or 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ "${ACTION_JAX_CPU:-0}" != 1 ] && command -v nvidia-smi >/dev/null 2>&1 \
    && nvidia-smi -L >/dev/null 2>&1; then
  extras="${extras:+$extras,}cuda12"
  echo "setup.sh: NVIDIA GPU found, installing JAX's CUDA 12 build (extra cuda12)" >&2
fi
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' || {
    echo "setup.sh: action_jax needs Python 3.11 or 3.12; $python is $("$python" -V 2>&1)." \
         "Run PYTHON=python3.11 bash scripts/setup.sh" >&2
    exit 1
  }
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
