"""Grading throughput over MATH-500 gold answers (target: >= 200 graded answers/s on 2 cores).

Each gold answer is written as a completion ``<think>...</think> ... \\boxed{gold}`` and graded
against itself by :class:`eval.grader.Grader` (process pool, per-answer timeout). Reported:

- ``cold``: first pass in fresh workers (math-verify's LaTeX cache empty; the parser warm-up
  of :func:`eval.grading.warm_up` uses none of the MATH-500 answers);
- ``warm``: a second pass over the same answers (parse caches hit, as when the same answer
  recurs across the n samples of a problem);
- ``startup_s``: pool start (forkserver + warm-up).

- ``adversarial``: one megabyte model outputs (unclosed boxes, deep braces, a huge box, a
  million-digit integer, LaTeX soup) graded one at a time: wall seconds and the status each gets
  (issue 17 §7: bounded by design, none may reach the timeout); ``last_boxed_56kb_s``: the
  last-``\\boxed{}`` finder on 56 KB of unclosed boxes (the former finder took ~30 s).

Usage: ``python bench/grading.py [--workers 2] [--data-dir DIR] [--out bench/results/grading.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eval.benchmarks import load_local  # noqa: E402
from eval.grader import Grader  # noqa: E402
from eval.grading import last_boxed  # noqa: E402
from soft_thinking.io import atomic_write_json  # noqa: E402

MB = 1 << 20
ADVERSARIAL = {
    "unclosed_boxes": "</think>" + "\\boxed{" * (MB // 7),
    "deep_braces": "</think>\\boxed{" + "{" * MB,
    "huge_box": "</think>\\boxed{" + "x^" * (MB // 2) + "1}",
    "million_digit_integer": "</think>\\boxed{" + "7" * MB + "}",
    "latex_soup": "</think>" + "\\frac{1}{" * (MB // 9),
    "bold_soup": "</think>" + "**1" * (MB // 3),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--data-dir", default=os.environ.get("SOFTGRPO_BENCHMARK_DIR", str(REPO / ".." / "shared" / "data" / "benchmarks")))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "grading.json"))
    args = ap.parse_args()
    problems = load_local("math500", args.data_dir)
    tasks = [(f"<think>some reasoning</think> The answer is $\\boxed{{{p.gold}}}$.", p.gold, "math500") for p in problems]
    t0 = time.perf_counter()
    with Grader(workers=args.workers, timeout_s=args.timeout) as g:
        startup = time.perf_counter() - t0
        passes = []
        for _ in range(2):
            t = time.perf_counter()
            res = g.grade(tasks)
            passes.append(time.perf_counter() - t)
        counts = dict(g.counts)
        adversarial = {}
        for name, text in ADVERSARIAL.items():
            t = time.perf_counter()
            r = g.grade_one(text, "5", "aime2024")
            adversarial[name] = {"chars": len(text), "wall_s": round(time.perf_counter() - t, 3), "status": r.status,
                                 "correct": r.correct}
    soup = "\\boxed{" * (56_000 // 7)
    t = time.perf_counter()
    last_boxed(soup)
    last_boxed_s = time.perf_counter() - t
    result = {
        "benchmark": "math500 gold answers graded against themselves",
        "answers": len(tasks),
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "startup_s": round(startup, 3),
        "cold_answers_per_s": round(len(tasks) / passes[0], 1),
        "warm_answers_per_s": round(len(tasks) / passes[1], 1),
        "correct_last_pass": sum(r.correct for r in res),
        "status_counts_both_passes": counts,
        "adversarial_timeout_s": args.timeout,
        "adversarial": adversarial,
        "last_boxed_56kb_s": round(last_boxed_s, 4),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    atomic_write_json(Path(args.out), result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
