"""Fixtures shared by every test folder.

``benchmark_dir``: the public benchmark files (``../shared/data/benchmarks`` beside the checkout,
or ``$SOFTGRPO_BENCHMARK_DIR``). A developer without them gets a skip; in CI (``CI=true``) a test
that needs them **fails**, so a missing data mount cannot turn the benchmark tests into silent skips.
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


@pytest.fixture(scope="session")
def benchmark_dir() -> Path:
    """The folder of the shared benchmark JSON and parquet files (see the module docstring)."""
    return require_benchmarks("math500.json", "gsm8k.json", "aime2024.json", "aime2025.json", "amc23.json")
