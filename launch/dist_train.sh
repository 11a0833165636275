#!/usr/bin/env bash
# Training on one machine or on several over ethernet: MMAction2's tools/dist_train.sh.
#
#   [ENV_VARS] bash launch/dist_train.sh CONFIG GPUS [PY_ARGS]
#
# CONFIG is a config file (configs/tsn_k400.py, or FILE:ARG); GPUS the GPUs of this machine to
# use (the first GPUS of CUDA_VISIBLE_DEVICES, or 0..GPUS-1); PY_ARGS go to action_jax.main
# (`--workdir DIR`, default work_dirs/<config name>; `--config.x=y` overrides). Environment, as
# MMAction2's: NNODES (machines, 1), NODE_RANK (this one's index, 0), MASTER_ADDR (node 0's
# address, 127.0.0.1), PORT (coordinator port on node 0: 29500 with several machines; with one,
# a free port unless given), PY_ARGS (more arguments, appended).
#
# JAX's model differs from PyTorch's: ONE process per machine drives all of its GPUs (the train
# step is a single program over a global device mesh), where torch.distributed.launch starts one
# process per GPU. So this starts one process per machine by default. Further variables:
#   NPROC=N             N processes on this machine, each with GPUS/N GPUs through its own
#                       CUDA_VISIBLE_DEVICES (NPROC=GPUS: one process per GPU, MMAction2's layout).
#   DEVICES_PER_PROC=K  CPU mode, no accelerator: NPROC processes (default GPUS/K) with K virtual
#                       CPU devices each (JAX_PLATFORMS=cpu, XLA_FLAGS=
#                       --xla_force_host_platform_device_count=K); GPUS is then NPROC × K.
#                       E.g. `NPROC=2 DEVICES_PER_PROC=2 bash launch/dist_train.sh CONFIG 4`.
#   LAUNCH_TIMEOUT=S    stop every process after S seconds (exit status 124).
#   PYTHON              the interpreter (default: an activated environment's python, else the
#                       repository's .venv, else python).
# Two jobs on one machine: give them different CUDA_VISIBLE_DEVICES and workdirs; the port is
# free-picked on one machine (an explicit PORT is checked), and a workdir in use by another job
# is refused. The launcher (python -m action_jax.launch) forwards SIGTERM (the processes save a
# checkpoint and exit 0; a rerun resumes), stops the other processes when one fails, and exits
# with its status.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: [ENV_VARS] bash $0 CONFIG GPUS [PY_ARGS]" >&2
    exit 2
fi
source "$(dirname "$0")/common.sh"
CONFIG=$1
GPUS=$2
# shellcheck disable=SC2206
EXTRA=(${PY_ARGS:-})
mapfile -d '' ARGS < <(with_workdir "work_dirs/$(config_name "$CONFIG")" "${@:3}" "${EXTRA[@]}")
set -x
exec "$PYTHON" -m action_jax.launch --gpus "$GPUS" -- --config="$CONFIG" "${ARGS[@]}"
