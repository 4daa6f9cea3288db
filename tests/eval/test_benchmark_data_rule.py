"""tests/benchmark_data.py (the benchmark_dir fixture of tests/conftest.py): a test that needs the shared benchmark data skips on a developer machine without
it, and fails under CI=true (a missing data mount must not turn the benchmark tests into skips)."""

import importlib.util
from pathlib import Path

import pytest


def load_conftest():
    path = Path(__file__).resolve().parents[1] / "benchmark_data.py"
    spec = importlib.util.spec_from_file_location("tests_benchmark_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_benchmarks_fail_in_ci_and_skip_elsewhere(tmp_path, monkeypatch, ci, outcome) -> None:
    conftest = load_conftest()
    monkeypatch.setenv("SOFTGRPO_BENCHMARK_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="math500.json"):
        conftest.require_benchmarks("math500.json")


def test_present_benchmarks_are_returned(tmp_path, monkeypatch) -> None:
    conftest = load_conftest()
    (tmp_path / "math500.json").write_text("[]")
    monkeypatch.setenv("SOFTGRPO_BENCHMARK_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    assert conftest.require_benchmarks("math500.json") == tmp_path
