#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU (installed with scripts/setup.sh test, which adds
# the cuda12 extra there), runs the GPU-relevant tests, then the TSN train step and the
# TSN/TSM/I3D inference in float32 and bfloat16 (clips/s, peak device memory) and TSN's
# 25 clips x 10 crops test views, and appends the figures to benchmarks/RESULTS.md under the
# device's name. About 6-8 minutes on an H100; every step has its own time limit. The log also
# goes to benchmarks/gpu_check.log.
#   bash benchmarks/gpu_check.sh              # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke  # tiny sizes on the CPU: checks the script only,
#                                             # collects the tests, writes nothing to RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
smoke=0
[ "${1:-}" = --cpu-smoke ] && smoke=1
exec > >(tee benchmarks/gpu_check.log) 2>&1

if [ "$smoke" = 1 ]; then
  export JAX_PLATFORMS=cpu
  size=64 iters=1 train_batch=2 infer_batch=1 frames=2 views=10 tests_args=(--collect-only -q)
  dtypes=(bfloat16) models=(i3d)
else
  size=224 iters=10 train_batch=32 infer_batch=8 frames=8 views=250 tests_args=(-q)
  dtypes=(float32 bfloat16) models=(tsn tsm i3d)
  backend=$("$python" -c 'import jax; print(jax.default_backend())')
  if [ "$backend" != gpu ]; then
    echo "gpu_check.sh: JAX runs on '$backend', not a GPU; install the CUDA build:" \
         "pip install -e '.[cuda12]' (scripts/setup.sh does so where nvidia-smi works)" >&2
    exit 1
  fi
fi
device=$("$python" -c 'import jax; d = jax.devices(); print(f"{len(d)} x {d[0].device_kind}")')
echo "== $(date -u +%FT%TZ) $device, JAX $("$python" -c 'import jax; print(jax.__version__)')"

# Tests whose outcome depends on the backend: fused (BatchNorm-folded, Conv3dAs2d) equals the
# trained layout, 3D convs, train step and bf16, sharding, inference API, device names.
echo '== tests'
if timeout 240 "$python" -m pytest "${tests_args[@]}" -p no:cacheprovider \
    tests/test_fuse.py tests/test_resnet3d.py tests/test_models.py tests/test_apis.py \
    tests/test_train.py tests/test_cli_errors.py::test_gpu_asked_for_where_jax_has_none \
    -k 'not sigterm and not nan_loss and not load_from'; then
  tests=passed
else
  tests="failed or timed out (status $?, see gpu_check.log)"
fi
echo "tests: $tests"

echo '== benchmarks'
rows=()
figure() {  # one gpu_figures.py run; a run past its limit becomes a row saying so
  local row
  if row=$(timeout 120 "$python" benchmarks/gpu_figures.py "$@" --size "$size" --iters "$iters" \
           | tail -1); then
    rows+=("$row")
  else
    rows+=("| $device | $* | timed out or failed (see gpu_check.log) | | | | | |")
  fi
  echo "${rows[-1]}"
}
for dtype in "${dtypes[@]}"; do
  figure train --dtype "$dtype" --batch "$train_batch" --frames "$frames"
  for model in "${models[@]}"; do
    figure inference --model "$model" --dtype "$dtype" --batch "$infer_batch" --frames "$frames"
  done
done
# tsn_k400.py's test: 25 clips x TenCrop = 250 views of one video at once (max_testing_views off).
figure inference --model tsn --dtype float32 --batch 1 --frames "$views" --label '25x10 views'

if [ "$smoke" = 1 ]; then
  echo '== cpu smoke run: RESULTS.md left as it is'
  exit 0
fi
{
  echo
  echo "## GPU: $device, $(date -u +%F) (\`benchmarks/gpu_check.sh\`)"
  echo 'clips/s: median over the timed calls (train: steps) after compilation; peak: the'
  echo "device's peak_bytes_in_use in that run's process. GPU-relevant tests: $tests."
  echo
  echo '| device | what | model | dtype | batch x frames x size | clips/s | peak GiB | note |'
  echo '|---|---|---|---|---|---|---|---|'
  printf '%s\n' "${rows[@]}"
} >> benchmarks/RESULTS.md
echo '== appended to benchmarks/RESULTS.md'
