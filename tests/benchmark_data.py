"""Where the shared benchmark data lives for tests, and the CI rule (see tests/conftest.py).

Import from test modules as ``from benchmark_data import require_benchmarks`` (``tests/`` is on
``sys.path`` through its conftest), or use the ``benchmark_dir`` fixture. Never ``from conftest
import ...``: several folders have a ``conftest.py`` and the name resolves to whichever loaded last.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO.parent / "shared" / "data" / "benchmarks"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def benchmark_path() -> Path:
    env = os.environ.get("SOFTGRPO_BENCHMARK_DIR")
    return Path(env) if env else SHARED_BENCHMARKS


def require_benchmarks(*names: str) -> Path:
    """The benchmark folder when it holds ``names``; else skip (fail under ``CI=true``)."""
    d = benchmark_path()
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        msg = f"benchmark files {missing} not found in {d} (set SOFTGRPO_BENCHMARK_DIR)"
        if in_ci():
            pytest.fail(f"{msg}; CI=true requires the shared benchmark data", pytrace=False)
        pytest.skip(msg)
    return d
