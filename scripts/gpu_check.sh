#!/usr/bin/env bash
# One-GPU check of the sample step, the engines and a bf16 trainer update (bench/gpu_check.py).
# Needs: one CUDA GPU, python with torch (>= 2.4, tested for 2.11) + transformers; omegaconf and
# PyYAML for the trainer check (small wheels). No sglang, verl, ray or internet: the repo's own
# packages go on PYTHONPATH. Writes bench/results/gpu_check.json (after every check), exits
# non-zero if any check failed, errored or the 8-minute limit (GPU_CHECK_TIMEOUT_S) cut it short.
#   scripts/gpu_check.sh                       all checks
#   scripts/gpu_check.sh --only rng_bits       a subset (names in bench/gpu_check.py)
# The trainer check imports omegaconf and math-verify. Where the image lacks them, fetch them on a
# machine with internet (~0.5 MB) and pass the folder; they go into a temporary folder on PYTHONPATH.
# `pip wheel`, not `pip download`: antlr4-python3-runtime 4.9.3 is published as an sdist only, and an
# sdist cannot be built on a machine without an index (run 2026-12-04 on an H200 image this way):
#   pip wheel --no-deps -w gpu_wheels omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 \
#       math-verify==0.9.0 latex2sympy2_extended==1.11.0
#   GPU_CHECK_WHEELS=gpu_wheels scripts/gpu_check.sh
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
if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
  if [ ! -d "$GPU_CHECK_WHEELS" ]; then
    echo "error: GPU_CHECK_WHEELS=$GPU_CHECK_WHEELS is not a folder (allowed: a folder of wheels/sdists)" >&2
    exit 2
  fi
  SITE="$(mktemp -d)"
  trap 'rm -rf "$SITE"' EXIT
  if ! "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "$GPU_CHECK_WHEELS"/*; then
    echo "error: installing the packages in GPU_CHECK_WHEELS=$GPU_CHECK_WHEELS failed" >&2
    exit 2
  fi
  export PYTHONPATH="$SITE:$PYTHONPATH"
fi
timeout --signal=TERM --kill-after=15 "$LIMIT" "$PY" -m bench.gpu_check --device cuda "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "error: gpu_check stopped by the ${LIMIT}s limit; finished checks are in bench/results/gpu_check.json" >&2
fi
exit "$rc"
