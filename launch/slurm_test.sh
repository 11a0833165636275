#!/usr/bin/env bash
# Testing a checkpoint on a SLURM cluster: MMAction2's tools/slurm_test.sh.
#
#   [ENV_VARS] bash launch/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [PY_ARGS]
#
# PY_ARGS go to `action_jax.main --mode test` (`--config.out=results.pkl`; `--workdir DIR` for
# the log, default work_dirs/<config name>/test). Variables and the task layout (one task per
# node; TASKS_PER_NODE for more): see slurm_train.sh.
set -euo pipefail
if [[ $# -lt 4 ]]; then
    echo "usage: [ENV_VARS] bash $0 PARTITION JOB_NAME CONFIG CHECKPOINT [PY_ARGS]" >&2
    exit 2
fi
source "$(dirname "$0")/common.sh"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
TASKS_PER_NODE=${TASKS_PER_NODE:-1}
SRUN_ARGS=${SRUN_ARGS:-""}
(( GPUS < GPUS_PER_NODE )) && GPUS_PER_NODE=$GPUS
if (( GPUS % GPUS_PER_NODE || GPUS_PER_NODE % TASKS_PER_NODE )); then
    echo "GPUS=$GPUS must be a multiple of GPUS_PER_NODE=$GPUS_PER_NODE, itself of" \
         "TASKS_PER_NODE=$TASKS_PER_NODE." >&2
    exit 2
fi
NODES=$(( GPUS / GPUS_PER_NODE ))
[[ -n "${PORT:-}" ]] && export JAX_COORDINATOR_PORT=$PORT
# shellcheck disable=SC2206
EXTRA=(${PY_ARGS:-})
TEST_WORKDIR="work_dirs/$(config_name "$CONFIG")/test"
mapfile -d '' ARGS < <(with_workdir "$TEST_WORKDIR" "${@:5}" "${EXTRA[@]}")
set -x
# shellcheck disable=SC2086
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --nodes="$NODES" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks=$(( NODES * TASKS_PER_NODE )) \
    --ntasks-per-node="$TASKS_PER_NODE" \
    --cpus-per-task=$(( CPUS_PER_TASK * GPUS_PER_NODE / TASKS_PER_NODE )) \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u -m action_jax.main --config="$CONFIG" --mode=test \
        --config.checkpoint="$CHECKPOINT" "${ARGS[@]}"
