"""Run one verl training job in a subprocess and collect what it logged (helper of the e2e tests).

The job gets its own session, so on timeout (or any exit) the whole process group -- driver, the
local Ray cluster it started and Ray's workers -- is killed: no cluster outlives a test. Memory is
the peak of the summed PSS of the process tree, sampled every second. Jobs run one at a time on the
machine (an ``flock`` on a file in the temp folder): with ``pytest -n 2`` two test files could otherwise
start two local Ray clusters at the same moment and race for Ray's default ports and the 2 cores.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class RunResult:
    rc: int
    wall_s: float
    peak_bytes: int
    steps: list[dict] = field(default_factory=list)
    log: str = ""

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.splitlines()[-n:])


def _tree_pss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:
            pass
    return total


LOCK = Path(tempfile.gettempdir()) / "softgrpo-tests-verl-job.lock"


def run_verl(module: str, args: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 900) -> RunResult:
    """``python -m <module> <args>`` in ``cwd``; metrics from verl's file logger (``VERL_FILE_LOGGER_PATH``).

    Waits for any other test's verl job on this machine to end first (the timeout counts from the start)."""
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _run(module, args, cwd, env, timeout_s)


def _run(module: str, args: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> RunResult:
    cwd.mkdir(parents=True, exist_ok=True)
    metrics = cwd / "metrics.jsonl"
    full_env = {**os.environ, **env, "VERL_FILE_LOGGER_PATH": str(metrics), "WANDB_MODE": "disabled",
                "PYTHONUNBUFFERED": "1"}
    log_path = cwd / "log.txt"
    t0 = time.monotonic()
    peak = 0
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                peak = max(peak, _tree_pss(proc.pid))
                if time.monotonic() - t0 > timeout_s:
                    break
                time.sleep(1.0)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = proc.wait()
    wall = time.monotonic() - t0
    steps = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    return RunResult(rc=rc, wall_s=wall, peak_bytes=peak, steps=steps, log=log_path.read_text(errors="replace"))
