#!/usr/bin/env bash
# GPU acceptance for perfscope: prints PASS/FAIL/SKIP per step and exits 0 when no step
# failed. On a CUDA machine it runs as it is and is bounded to 10 minutes. With
# PERFSCOPE_ACCEPTANCE_FAKES=1 it runs against perfscope.testing's fake CUDA and NVML
# (what the tests do). PYTHON selects the interpreter (default: the repository's .venv,
# else python3).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$here/../.venv/bin/python" ]; then python="$here/../.venv/bin/python"; else python=python3; fi
fi
timeout --signal=INT --kill-after=10 600 "$python" "$here/gpu_acceptance.py" "$@"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 130 ]; then
  echo "FAIL  all: did not finish within 10 minutes"
fi
exit "$status"
