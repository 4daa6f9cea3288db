"""Fixtures shared by every test folder.

``benchmark_dir``: the public benchmark files (``../shared/data/benchmarks`` beside the checkout,
or ``$SOFTGRPO_BENCHMARK_DIR``). A developer without them gets a skip; in CI (``CI=true``) a test
that needs them **fails**, so a missing data mount cannot turn the benchmark tests into silent skips.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_data import require_benchmarks  # tests/ is on sys.path (rootdir conftest, no __init__.py)


@pytest.fixture(scope="session")
def benchmark_dir() -> Path:
    """The folder of the shared benchmark JSON and parquet files (see the module docstring)."""
    return require_benchmarks("math500.json", "gsm8k.json", "aime2024.json", "aime2025.json", "amc23.json")
