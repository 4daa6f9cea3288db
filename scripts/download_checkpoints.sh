#!/usr/bin/env bash
# Download the released SofT-GRPO / GRPO checkpoints and print MODEL=... lines for the sampling scripts.
#
# Usage:  scripts/download_checkpoints.sh [list|locate|download] [LOCAL_DIR] [extra flags...]
# Env:    REPO (default zz1358m/SofT-GRPO-master), REVISION (branch/tag/commit to pin; default main),
#         LOCAL_DIR (default checkpoints, relative to where you stand), INCLUDE (glob of repo paths, e.g. '*1.5B*').
# Rerunning resumes partial downloads; every file is checked (size, LFS sha256) against the hub.
# `scripts/download_checkpoints.sh list` only lists the repo's files; `locate` lists the usable local models.
# Every value is checked by `python -m eval.checkpoints` before the network is used or anything is written.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(dirname "$HERE")"
if [ -f "$REPO_ROOT/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$REPO_ROOT/.venv/bin/activate"
fi
ACTION=download
case "${1:-}" in
  list|locate|download) ACTION="$1"; shift ;;
esac
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then LOCAL_DIR="$1"; shift; fi
ARGS=("$ACTION" --repo "${REPO:-zz1358m/SofT-GRPO-master}" --local-dir "${LOCAL_DIR:-checkpoints}")
if [ -n "${REVISION+x}" ]; then ARGS+=(--revision "$REVISION"); fi
if [ -n "${INCLUDE+x}" ]; then ARGS+=(--include "$INCLUDE"); fi
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1
exec python -m eval.checkpoints "${ARGS[@]}" "$@"
