"""Every gold answer of the five main benchmarks, boxed after </think>, grades correct."""

import json
import os
import time
from pathlib import Path

import pytest

from eval.benchmarks import MAIN_BENCHMARKS
from eval.grader import Grader


def benchmark_dir() -> Path:
    env = os.environ.get("SOFTGRPO_BENCHMARK_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "benchmarks"


DATA = benchmark_dir()
pytestmark = pytest.mark.skipif(not (DATA / "math500.json").is_file(), reason=f"benchmarks not found at {DATA}")


def test_all_gold_answers_grade_correct_and_a_wrong_one_does_not():
    tasks, names = [], []
    for b in MAIN_BENCHMARKS:
        for i, rec in enumerate(json.loads((DATA / f"{b}.json").read_text())):
            gold = rec["final_answer"]
            tasks.append((f"<think>working</think> So the answer is \\boxed{{{gold}}}.", gold, b))
            names.append(f"{b}#{i}")
    assert len(tasks) == 30 + 30 + 40 + 500 + 1319
    t0 = time.monotonic()
    with Grader(workers=2, timeout_s=20) as g:
        res = g.grade(tasks)
        wrong = g.grade([("</think>\\boxed{\\frac{2}{3}}", "\\frac{3}{2}", "math500"), ("</think>\\boxed{19}", "18", "gsm8k")])
    failed = [(n, t[1], r) for n, t, r in zip(names, tasks, res) if not r.correct]
    assert failed == []
    assert all(r.status == "ok" for r in res)
    assert [r.correct for r in wrong] == [False, False]
    assert time.monotonic() - t0 < 60


def test_extra_benchmark_golds_grade_correct():
    """OlympiadBench golds carry their own $...$ (two are malformed: "$221,$8$", "...\\{1\\}$.");
    GPQA golds are letters."""
    tasks = []
    for rec in json.loads((DATA / "olympiad_bench.json").read_text()):
        g = rec["final_answer"]
        tasks.append((f"</think>\\boxed{{{g.replace('$', '').rstrip('.')}}}", g, "olympiad_bench"))
    for rec in json.loads((DATA / "gpqa_diamond.json").read_text()):
        tasks.append((f"</think>The answer is \\boxed{{{rec['final_answer']}}}", rec["final_answer"], "gpqa_diamond"))
    with Grader(workers=2, timeout_s=20) as g:
        res = g.grade(tasks)
    assert [t[1] for t, r in zip(tasks, res) if not r.correct] == []
