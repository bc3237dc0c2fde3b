#!/usr/bin/env bash
# perfscope's main job on this machine's default device (GPU if there is one, else CPU):
# calibrate the device, a quick real sweep, train the predictors, an estimate from them,
# and the dashboard's data. Usage: bash scripts/main-job.sh [DATASET]   (default: profiles)
set -euo pipefail
cd "$(dirname "$0")/.."
ps=.venv/bin/perfscope
dataset=${1:-profiles}
$ps calibrate                                    # measured peaks, bandwidth, launch floor
$ps collect --spec quick --out "$dataset"        # resumes if interrupted
$ps ls "$dataset"
$ps train "$dataset" --out "$dataset-model"      # figures judged on held-out shapes
device=$(.venv/bin/python -c "from perfscope.devices import select_device; print(select_device('auto').key)")
case "$device" in
  cuda-*) impl=triton.matmul; tile=64 ;;
  *)      impl=numba.tiled;   tile=8 ;;
esac
# a shape the sweep did not measure, and the best tile for it
$ps estimate gemm --m 384 --n 384 --k 384 --dtype fp32 --device "$device" --model "$dataset-model" \
  --implementation "$impl" --tile "$tile" --best-tile
$ps dashboard "$dataset" --check                 # then: perfscope dashboard $dataset
