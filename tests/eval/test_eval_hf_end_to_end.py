"""The harness on the real reference engine (tiny random Qwen2): outputs, resume, batching invariance."""

import json
from pathlib import Path

import pytest

from eval.cli import main
from soft_thinking.engines.hf.engine import SoftThinkingEngine

DATA = Path()


@pytest.fixture(autouse=True)
def _data(benchmark_dir: Path) -> None:
    """Every test here reads gsm8k.json (skip without it; under CI=true a failure)."""
    global DATA
    DATA = benchmark_dir


def run(tmp_path: Path, name: str, *extra: str) -> int:
    return main([
        "run", "--model", "tiny-qwen2", "--benchmarks", "gsm8k", "--limit", "2", "--num_samples", "4",
        "--max_generated_tokens", "12", "--data-dir", str(DATA), "--output-dir", str(tmp_path), "--run-name", name,
        "--enable_soft_thinking", "--add_noise_gumbel_softmax", "--n-boot", "100", *extra,
    ])


def test_tiny_model_end_to_end_then_resume_skips_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFTGRPO_CACHE", str(tmp_path / "cache"))
    assert run(tmp_path, "r") == 0
    rd = tmp_path / "r"
    lines = [json.loads(x) for x in (rd / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 4 and {ln["sample_index"] for ln in lines} == {0, 1, 2, 3}
    assert all(ln["soft_share"] > 0 for ln in lines)
    for f in ("summary.json", "summary.md", "passk.png", "config.json"):
        assert (rd / f).is_file(), f
    json.loads((rd / "summary.json").read_text())

    def no_generation(*a, **k):
        raise AssertionError("a resumed run generated again")

    monkeypatch.setattr(SoftThinkingEngine, "generate", no_generation)
    assert run(tmp_path, "r") == 0
    assert (rd / "samples.jsonl").read_text().count("\n") == 8


def test_samples_do_not_depend_on_which_problems_share_a_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-problem seeds: a problem's samples are the same whether it is generated with others or alone."""
    monkeypatch.setenv("SOFTGRPO_CACHE", str(tmp_path / "cache"))
    assert run(tmp_path, "both") == 0
    assert main([
        "run", "--model", "tiny-qwen2", "--benchmarks", "gsm8k", "--limit", "1", "--num_samples", "4",
        "--max_generated_tokens", "12", "--data-dir", str(DATA), "--output-dir", str(tmp_path), "--run-name", "one",
        "--enable_soft_thinking", "--add_noise_gumbel_softmax", "--n-boot", "100",
    ]) == 0

    def texts(name: str) -> dict:
        rows = [json.loads(x) for x in (tmp_path / name / "samples.jsonl").read_text().splitlines()]
        return {(r["problem_id"], r["sample_index"]): r["text"] for r in rows}

    both, one = texts("both"), texts("one")
    assert one and all(both[k] == v for k, v in one.items())
