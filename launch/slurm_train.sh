#!/usr/bin/env bash
# Training on a SLURM cluster: MMAction2's tools/slurm_train.sh.
#
#   [ENV_VARS] bash launch/slurm_train.sh PARTITION JOB_NAME CONFIG [--workdir DIR] [PY_ARGS]
#
# Environment, as MMAction2's: GPUS (in all, 8), GPUS_PER_NODE (8; fewer GPUS than that use one
# node with GPUS), CPUS_PER_TASK (CPUs per GPU, 5: MMAction2 runs a task per GPU), SRUN_ARGS
# (more srun options), PY_ARGS (more arguments, appended). Also PORT: the coordinator port on
# the first node (default: derived from the job id, so that jobs do not collide).
#
# JAX runs ONE task per node driving all of the node's GPUs (MMAction2 runs one per GPU), so
# this asks srun for GPUS/GPUS_PER_NODE nodes × 1 task with GPUS_PER_NODE GPUs and
# CPUS_PER_TASK × GPUS_PER_NODE CPUs each. TASKS_PER_NODE=GPUS_PER_NODE gives MMAction2's one
# task per GPU instead (each task then drives its own GPU: action_jax/distributed.py splits the
# node's GPUs among its tasks). jax.distributed reads the topology from SLURM.
set -euo pipefail
if [[ $# -lt 3 ]]; then
    echo "usage: [ENV_VARS] bash $0 PARTITION JOB_NAME CONFIG [--workdir DIR] [PY_ARGS]" >&2
    exit 2
fi
source "$(dirname "$0")/common.sh"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
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
mapfile -d '' ARGS < <(with_workdir "work_dirs/$(config_name "$CONFIG")" "${@:4}" "${EXTRA[@]}")
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
    "$PYTHON" -u -m action_jax.main --config="$CONFIG" "${ARGS[@]}"
