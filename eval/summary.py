"""Per-benchmark metrics from sample records (spec §6).

For each benchmark with ``n`` samples per problem: mean@n (= Pass@1), unbiased Pass@k for
k in {1, 2, 4, ..., 32} up to n, the original's "first-k" Pass@k, bootstrap 95% CIs over
problems (seeded), average tokens (all / correct only), average thinking tokens, soft-step
share and grade-status counts. The "average" row is the unweighted mean over benchmarks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from eval.grading import STATUSES
from eval.metrics import bootstrap_ci, k_values, pass_at_k, pass_at_k_first
from soft_thinking.text import THINK_END


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def _with_ci(values: Sequence[float], seed: int, n_boot: int) -> dict[str, float]:
    lo, hi = bootstrap_ci(values, seed=seed, n_boot=n_boot)
    return {"value": float(np.mean(values)), "ci_low": lo, "ci_high": hi}


def summarize_benchmark(
    records: Iterable[dict[str, Any]], num_samples: int, *, seed: int = 0, n_boot: int = 1000
) -> dict[str, Any]:
    """Metrics over problems that have all ``num_samples`` samples (the rest count as incomplete)."""
    by_problem: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r["sample_index"] < num_samples:
            by_problem[int(r["problem_id"])][int(r["sample_index"])] = r
    complete = {p: s for p, s in by_problem.items() if len(s) == num_samples}
    out: dict[str, Any] = {"num_problems": len(complete), "num_samples": num_samples,
                           "incomplete_problems": len(by_problem) - len(complete)}
    if not complete:
        return out
    pids = sorted(complete)
    corr = [[bool(complete[p][j]["correct"]) for j in range(num_samples)] for p in pids]
    ks = k_values(num_samples)
    out["mean_at_n"] = _with_ci([sum(c) / num_samples for c in corr], seed, n_boot)
    out["pass_at_k"] = {str(k): _with_ci([pass_at_k(num_samples, sum(c), k) for c in corr], seed, n_boot) for k in ks}
    out["pass_at_k_first_k"] = {str(k): _with_ci([pass_at_k_first(c, k) for c in corr], seed, n_boot) for k in ks}
    samples = [complete[p][j] for p in pids for j in range(num_samples)]
    out["avg_tokens"] = _mean([s["num_tokens"] for s in samples])
    out["avg_tokens_correct"] = _mean([s["num_tokens"] for s in samples if s["correct"]])
    out["avg_thinking_tokens"] = _mean([s["num_thinking_tokens"] for s in samples])
    out["avg_soft_share"] = _mean([s["soft_share"] for s in samples])
    out["no_think_end_share"] = _mean([float(THINK_END not in s["text"]) for s in samples if "text" in s])
    counts = Counter(s["grade_status"] for s in samples)
    out["grade_status"] = {st: counts.get(st, 0) for st in STATUSES}
    return out


def summarize(records_by_benchmark: dict[str, list[dict[str, Any]]], num_samples: int, *, seed: int = 0,
              n_boot: int = 1000) -> dict[str, Any]:
    benches = {b: summarize_benchmark(recs, num_samples, seed=seed, n_boot=n_boot)
               for b, recs in records_by_benchmark.items()}
    done = [s for s in benches.values() if s.get("num_problems")]
    avg: dict[str, Any] = {}
    if done:
        avg["mean_at_n"] = float(np.mean([s["mean_at_n"]["value"] for s in done]))
        avg["pass_at_k"] = {k: float(np.mean([s["pass_at_k"][k]["value"] for s in done])) for k in done[0]["pass_at_k"]}
        avg["pass_at_k_first_k"] = {
            k: float(np.mean([s["pass_at_k_first_k"][k]["value"] for s in done])) for k in done[0]["pass_at_k_first_k"]
        }
        avg["grade_status"] = {st: sum(s["grade_status"][st] for s in done) for st in STATUSES}
    return {"num_samples": num_samples, "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95},
            "benchmarks": benches, "average": avg}
