"""Helpers of the bad-input tests: run a CLI in a subprocess from a scratch folder and check that it
failed the documented way (exit status 2, exactly one ``error:`` line naming the field, no
traceback) and wrote nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "quickstart.yaml"


def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file and ``{dir/: ''}`` of every folder under ``folder``."""
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        out[rel + "/" if p.is_dir() else rel] = "" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(module: str, args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def assert_one_error(proc: subprocess.CompletedProcess[str], *named: str) -> str:
    """Exit 2, exactly one ``error:`` line on stderr naming every string of ``named``, no traceback."""
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1, proc.stderr[-2000:]
    for name in named:
        assert name in errors[0], (name, errors[0])
    return errors[0]
