#!/usr/bin/env bash
# One-GPU check of the sample step, the engines and a bf16 trainer update (bench/gpu_check.py).
# Needs: one CUDA GPU, python with torch (>= 2.4, tested for 2.11) + transformers; omegaconf and
# PyYAML for the trainer check (small wheels). No sglang, verl, ray or internet: the repo's own
# packages go on PYTHONPATH. Writes bench/results/gpu_check.json (after every check), exits
# non-zero if any check failed, errored or the 8-minute limit (GPU_CHECK_TIMEOUT_S) cut it short.
#   scripts/gpu_check.sh                       all checks
#   scripts/gpu_check.sh --only rng_bits       a subset (names in bench/gpu_check.py)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
LIMIT="${GPU_CHECK_TIMEOUT_S:-470}"
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "error: no CUDA device visible to $PY (torch.cuda.is_available() is False): scripts/gpu_check.sh needs one GPU;" \
       "for the CPU plumbing run use: python -m bench.gpu_check --device cpu --quick" >&2
  exit 2
fi
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT/sglang_soft_thinking_pkg:$ROOT/verl-0.4.x:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
timeout --signal=TERM --kill-after=15 "$LIMIT" "$PY" -m bench.gpu_check --device cuda "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "error: gpu_check stopped by the ${LIMIT}s limit; finished checks are in bench/results/gpu_check.json" >&2
fi
exit "$rc"
