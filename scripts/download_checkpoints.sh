#!/usr/bin/env bash
# Download the released SofT-GRPO / GRPO checkpoints and print MODEL=... lines for the sampling scripts.
#
# Usage:  scripts/download_checkpoints.sh [LOCAL_DIR] [extra flags...]
# Env:    REPO (default zz1358m/SofT-GRPO-master), REVISION (branch/tag/commit to pin; default main),
#         LOCAL_DIR (default checkpoints), INCLUDE (glob of repo paths, e.g. '*1.5B*').
# Rerunning resumes partial downloads; every file is checked (size, LFS sha256) against the hub.
# `scripts/download_checkpoints.sh list` only lists the repo's files.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -f "$HERE/../.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$HERE/../.venv/bin/activate"
fi
ACTION=download
if [ "${1:-}" = "list" ] || [ "${1:-}" = "locate" ]; then ACTION="$1"; shift; fi
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then LOCAL_DIR="$1"; shift; fi
ARGS=("$ACTION" --repo "${REPO:-zz1358m/SofT-GRPO-master}" --local-dir "${LOCAL_DIR:-checkpoints}")
if [ -n "${REVISION:-}" ]; then ARGS+=(--revision "$REVISION"); fi
if [ -n "${INCLUDE:-}" ]; then ARGS+=(--include "$INCLUDE"); fi
cd "$HERE/.."
exec python -m eval.checkpoints "${ARGS[@]}" "$@"
