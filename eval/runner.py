"""The evaluation loop: generate missing samples, grade them, append, summarize.

Resume: the keys ``(benchmark, problem_id, sample_index)`` already in ``samples.jsonl`` are
skipped; for a problem with missing samples the backend is asked for ``max(missing) + 1``
samples with the problem's seed (:func:`eval.settings.problem_seed`) and only the missing
indices are kept, so every sample is identical to what a fresh run would have drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.backends import Backend
from eval.benchmarks import Problem
from eval.grader import Grader
from eval.prompts import DEFAULT_TEMPLATE
from eval.report import write_reports
from eval.rundir import RunDir
from eval.settings import SettingsError, problem_seed
from eval.summary import summarize

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    run_dir: Path
    fingerprint: dict[str, Any]  # stored in config.json; compared on resume
    num_samples: int
    seed: int = 0
    prompt_template: str = DEFAULT_TEMPLATE
    grade_workers: int = 2
    grade_timeout_s: float = 10.0
    n_boot: int = 1000
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    chunk_problems: int = 16  # problems per backend call (the engine batches their samples together)
    require_think_end: bool = False  # score 0 without </think> (see eval.cli for the default)


def run_eval(spec: RunSpec, problems_by_benchmark: dict[str, Sequence[Problem]], backend: Backend) -> dict[str, Any]:
    """Generate + grade every missing sample, then write summary.json/.md and passk.png."""
    if spec.num_samples < 1 or spec.n_boot < 1:
        raise SettingsError(f"num_samples={spec.num_samples}, n_boot={spec.n_boot}: allowed integers >= 1")
    rd = RunDir(spec.run_dir)
    rd.init(spec.fingerprint)
    done = rd.load_samples()
    todo = [
        (p, [j for j in range(spec.num_samples) if (p.benchmark, p.problem_id, j) not in done])
        for probs in problems_by_benchmark.values() for p in probs
    ]
    todo = [(p, missing) for p, missing in todo if missing]
    log.info("%d problems need samples (%d samples already done)", len(todo), len(done))
    if todo:
        with Grader(workers=spec.grade_workers, timeout_s=spec.grade_timeout_s) as grader:
            for start in range(0, len(todo), spec.chunk_problems):
                chunk = todo[start : start + spec.chunk_problems]
                records = _sample_chunk(chunk, spec, backend, grader)
                rd.append_samples(records)
                for r in records:
                    done[(r["benchmark"], r["problem_id"], r["sample_index"])] = r
                log.info("[%d/%d problems] %d samples", start + len(chunk), len(todo), len(records))
    wanted = {b: {p.problem_id for p in probs} for b, probs in problems_by_benchmark.items()}
    records_by_benchmark = {
        b: [r for (rb, pid, _), r in done.items() if rb == b and pid in ids] for b, ids in wanted.items()
    }
    summary = summarize(records_by_benchmark, spec.num_samples, seed=spec.seed, n_boot=spec.n_boot)
    summary["run"] = {"dir": str(spec.run_dir), **spec.extra}
    write_reports(rd.path, summary, spec.title or rd.path.name)
    return summary


def _sample_chunk(
    chunk: Sequence[tuple[Problem, list[int]]], spec: RunSpec, backend: Backend, grader: Grader
) -> list[dict]:
    """Generate the missing samples of a few problems in one backend call, grade them together.

    Each problem is seeded by ``problem_seed`` and sample ``j`` is the ``j``-th draw of that seed,
    so which samples were already done, and which problems share a call, change nothing.
    """
    prompts = [backend.format_prompt(p.problem, spec.prompt_template) for p, _ in chunk]
    seeds = [problem_seed(spec.seed, p.benchmark, p.problem_id) for p, _ in chunk]
    n = max(max(missing) + 1 for _, missing in chunk)
    outputs = backend.generate(prompts, n, seeds)
    tasks, meta = [], []
    for (p, missing), seed, completions in zip(chunk, seeds, outputs, strict=True):
        if len(completions) != n:
            raise RuntimeError(f"backend returned {len(completions)} completions for {p.benchmark} #{p.problem_id}, expected {n}")
        for j in missing:
            tasks.append((completions[j].text, p.gold, p.benchmark))
            meta.append((p, j, seed, completions[j]))
    records = []
    for (p, j, seed, c), g in zip(meta, grader.grade(tasks, require_think_end=spec.require_think_end), strict=True):
        records.append({
            "benchmark": p.benchmark, "problem_id": p.problem_id, "sample_index": j, "seed": seed,
            "text": c.text, "gold": p.gold, "extracted": g.extracted, "correct": g.correct,
            "grade_status": g.status, "grade_detail": g.detail, "num_tokens": c.num_tokens,
            "num_thinking_tokens": c.num_thinking_tokens, "soft_share": c.soft_share,
            "finish_reason": c.finish_reason, "time_s": c.time_s,
        })
    return records
