"""Every gold answer of the five main benchmarks, boxed after </think>, grades correct."""

import json
from pathlib import Path

from eval.benchmarks import MAIN_BENCHMARKS
from eval.grader import Grader


def test_all_gold_answers_grade_correct_and_a_wrong_one_does_not(benchmark_dir: Path):
    data = benchmark_dir
    tasks, names = [], []
    for b in MAIN_BENCHMARKS:
        for i, rec in enumerate(json.loads((data / f"{b}.json").read_text())):
            gold = rec["final_answer"]
            tasks.append((f"<think>working</think> So the answer is \\boxed{{{gold}}}.", gold, b))
            names.append(f"{b}#{i}")
    assert len(tasks) == 30 + 30 + 40 + 500 + 1319
    with Grader(workers=2, timeout_s=20) as g:
        res = g.grade(tasks)
        wrong = g.grade([("</think>\\boxed{\\frac{2}{3}}", "\\frac{3}{2}", "math500"), ("</think>\\boxed{19}", "18", "gsm8k")])
    failed = [(n, t[1], r) for n, t, r in zip(names, tasks, res) if not r.correct]
    assert failed == []
    assert all(r.status == "ok" for r in res)
    assert [r.correct for r in wrong] == [False, False]


def test_extra_benchmark_golds_grade_correct(benchmark_dir: Path):
    """OlympiadBench golds carry their own $...$ (two are malformed: "$221,$8$", "...\\{1\\}$.");
    GPQA golds are letters."""
    data = benchmark_dir
    tasks = []
    for rec in json.loads((data / "olympiad_bench.json").read_text()):
        g = rec["final_answer"]
        tasks.append((f"</think>\\boxed{{{g.replace('$', '').rstrip('.')}}}", g, "olympiad_bench"))
    for rec in json.loads((data / "gpqa_diamond.json").read_text()):
        tasks.append((f"</think>The answer is \\boxed{{{rec['final_answer']}}}", rec["final_answer"], "gpqa_diamond"))
    with Grader(workers=2, timeout_s=20) as g:
        res = g.grade(tasks)
    assert [t[1] for t, r in zip(tasks, res) if not r.correct] == []
