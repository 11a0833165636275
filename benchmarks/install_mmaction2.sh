#!/usr/bin/env bash
# Installs MMAction2 1.2.0 beside the project's venv (not into it) for the benchmarks'
# comparisons:  bash benchmarks/install_mmaction2.sh [DIR]  then  PYTHONPATH=DIR python benchmarks/...
# mmcv-lite (no compiled ops) is enough for the recognizers; mmaction2 1.2.0 needs mmcv < 2.2.
# Its PyPI wheel and sdist both lack mmaction/models/localizers/drn, which the package imports
# at start-up: an empty DRN stands in (DRN itself is not benchmarked).
set -euo pipefail
dir=${1:-.mmaction2}
python=${PYTHON:-.venv/bin/python}
"$python" -m pip install -q --target "$dir" --no-deps mmaction2==1.2.0 mmengine==0.10.7 \
    mmcv-lite==2.1.0 addict yapf termcolor 'importlib_metadata<8.6' zipp
mkdir -p "$dir/mmaction/models/localizers/drn"
touch "$dir/mmaction/models/localizers/drn/__init__.py"
echo 'class DRN: pass  # missing from the mmaction2 1.2.0 wheel' \
    > "$dir/mmaction/models/localizers/drn/drn.py"
PYTHONPATH="$dir" "$python" -c 'import mmaction; print("mmaction2", mmaction.__version__, "in", "'"$dir"'")'
