# Shared by the launch/*.sh scripts (sourced, not run).
# ROOT: the repository; PYTHON: the interpreter (default: `python` of an activated virtualenv
# or conda environment, else the repository's .venv, else `python` on PATH).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" && -x "$ROOT/.venv/bin/python" ]]; then
        PYTHON="$ROOT/.venv/bin/python"
    else
        PYTHON=python
    fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# with_workdir DEFAULT ARGS...: prints ARGS one per line (NUL-separated), with MMAction2's
# `--work-dir X` accepted as `--workdir X`, and `--workdir=DEFAULT` added when none is given
# (MMAction2's default: work_dirs/<config name>).
with_workdir() {
    local default=$1; shift
    local found=0 out=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --work-dir|--work_dir|--workdir) out+=("--workdir=$2"); found=1; shift 2 ;;
            --work-dir=*|--work_dir=*|--workdir=*) out+=("--workdir=${1#*=}"); found=1; shift ;;
            *) out+=("$1"); shift ;;
        esac
    done
    [[ $found == 1 ]] || out+=("--workdir=$default")
    printf '%s\0' "${out[@]}"
}

# config_name CONFIG: configs/tsn_k400.py[:arg] -> tsn_k400
config_name() {
    local c="${1%%:*}"
    c="$(basename "$c")"
    echo "${c%.py}"
}
