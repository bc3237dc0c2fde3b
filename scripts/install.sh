#!/usr/bin/env bash
# Install perfscope into ./.venv.
#   bash scripts/install.sh          perfscope (collect, train, estimate, dashboard)
#   bash scripts/install.sh --test   and what the tests need: the test extra, and Debian's
#                                    chromium + chromium-driver for the dashboard's browser tests
# Without an NVIDIA GPU: a CPU build of torch (a bare `torch` would pull a CUDA build of
# several GB). With one (nvidia-smi works): the `cuda` extra (CUDA torch, triton, nvidia-ml-py).
# Set PERFSCOPE_TORCH_INDEX_URL to take the CPU build from another index, e.g. PyTorch's
# own CPU wheel index on a machine whose PyPI serves only CUDA builds.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="dashboard,ray"
if [ "${1:-}" = "--test" ]; then
  extras="dashboard,ray,test"
  if ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "install: Debian chromium and chromium-driver for the browser tests" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
      echo "install: the browser tests need chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)" >&2
    fi
  fi
fi
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "install: NVIDIA GPU found: installing perfscope[cuda,$extras]" >&2
  pip install -q -e ".[cuda,$extras]"
else
  echo "install: no NVIDIA GPU: installing a CPU build of torch" >&2
  pip install -q "torch==2.13.0" ${PERFSCOPE_TORCH_INDEX_URL:+--index-url "$PERFSCOPE_TORCH_INDEX_URL"}
  pip install -q -e ".[$extras]"
fi
