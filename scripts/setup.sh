#!/usr/bin/env bash
# Creates .venv (if missing) and installs action_jax, with the extras named in $1 (e.g. "test").
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${1:+[$1]}"
