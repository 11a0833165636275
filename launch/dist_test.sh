#!/usr/bin/env bash
# Testing a checkpoint on one machine or on several: MMAction2's tools/dist_test.sh.
#
#   [ENV_VARS] bash launch/dist_test.sh CONFIG CHECKPOINT GPUS [PY_ARGS]
#
# CHECKPOINT: an action_jax workdir, checkpoints/ or step directory, or an MMAction2 .pth.
# PY_ARGS go to `action_jax.main --mode test` (e.g. `--config.out=results.pkl`, MMAction2's
# --dump; `--workdir DIR` for the log, default work_dirs/<config name>/test). The variables and
# the process model are dist_train.sh's: NNODES, NODE_RANK, MASTER_ADDR, PORT, PY_ARGS, NPROC,
# DEVICES_PER_PROC, LAUNCH_TIMEOUT, PYTHON (see there). Each process evaluates its share of the
# videos; scores are gathered in list-file order, so the metrics and the --config.out file do
# not depend on the number of processes or devices.
set -euo pipefail
if [[ $# -lt 3 ]]; then
    echo "usage: [ENV_VARS] bash $0 CONFIG CHECKPOINT GPUS [PY_ARGS]" >&2
    exit 2
fi
source "$(dirname "$0")/common.sh"
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
# shellcheck disable=SC2206
EXTRA=(${PY_ARGS:-})
TEST_WORKDIR="work_dirs/$(config_name "$CONFIG")/test"
mapfile -d '' ARGS < <(with_workdir "$TEST_WORKDIR" "${@:4}" "${EXTRA[@]}")
set -x
exec "$PYTHON" -m action_jax.launch --gpus "$GPUS" -- --config="$CONFIG" --mode=test \
    --config.checkpoint="$CHECKPOINT" "${ARGS[@]}"
