#!/usr/bin/env bash
# Install perfscope and its test tools into ./.venv.
# Without an NVIDIA GPU: a CPU build of torch (a bare `torch` would pull a CUDA build of
# several GB). With one (nvidia-smi works): the `cuda` extra (CUDA torch, triton, nvidia-ml-py).
# Set PERFSCOPE_TORCH_INDEX_URL to take the CPU build from another index, e.g. PyTorch's
# own CPU wheel index on a machine whose PyPI serves only CUDA builds.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "install: NVIDIA GPU found: installing perfscope[cuda]" >&2
  pip install -q -e ".[cuda,test]"
else
  echo "install: no NVIDIA GPU: installing a CPU build of torch" >&2
  pip install -q "torch==2.13.0" ${PERFSCOPE_TORCH_INDEX_URL:+--index-url "$PERFSCOPE_TORCH_INDEX_URL"}
  pip install -q -e ".[test]"
fi
