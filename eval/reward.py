"""verl ``custom_reward_function``: 1.0 when the completion's answer is correct, else 0.0.

``compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float``. Grading
follows :func:`eval.grading.grade_answer` (text after ``</think>``, last ``\\boxed{}``) and runs
in a shared :class:`eval.grader.Grader` process pool so a pathological answer times out
(score 0; counted in :data:`STATUS_COUNTS`) instead of hanging the trainer. Batched callers
should use ``Grader.grade`` directly.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import Counter
from typing import Any

from eval.grader import Grader
from eval.grading import BENCHMARK_GOLD_FORMAT

_lock = threading.Lock()
_grader: Grader | None = None
STATUS_COUNTS: Counter[str] = Counter()

# verl data_source names -> gold format; anything else is graded as LaTeX.
_SOURCE_ALIASES = {"aime": "expr", "gsm8k": "expr", "openai/gsm8k": "expr", "amc": "latex", "math": "latex",
                   "deepscaler": "latex"}


def gold_format_for_source(data_source: str, extra_info: dict[str, Any] | None = None) -> str:
    if extra_info and extra_info.get("gold_format"):
        return str(extra_info["gold_format"])
    key = (data_source or "").lower()
    if key in BENCHMARK_GOLD_FORMAT:
        return BENCHMARK_GOLD_FORMAT[key]
    for prefix, fmt in _SOURCE_ALIASES.items():
        if key.startswith(prefix) or prefix in key:
            return fmt
    return "latex"


def _shared_grader() -> Grader:
    global _grader
    with _lock:
        if _grader is None:
            _grader = Grader(workers=int(os.environ.get("SOFTGRPO_GRADE_WORKERS", "2")),
                             timeout_s=float(os.environ.get("SOFTGRPO_GRADE_TIMEOUT", "10")))
            atexit.register(_grader.close)
        return _grader


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None) -> float:
    """1.0 if ``solution_str`` answers ``ground_truth`` correctly, else 0.0."""
    fmt = gold_format_for_source(data_source, extra_info)
    grader = _shared_grader()
    with _lock:  # the pool is not re-entrant; verl may call from threads
        res = grader.grade_one(solution_str, ground_truth, fmt)
    STATUS_COUNTS[res.status] += 1
    return 1.0 if res.correct else 0.0
