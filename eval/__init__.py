"""Evaluation harness for soft-thinking / SofT-GRPO models (spec §6).

Public API: :func:`pass_at_k` (unbiased estimator), :func:`grade_answer` (math-verify grading
of one completion), :class:`eval.grader.Grader` (process pool with per-answer timeouts).
``grade_answer`` is imported lazily so that ``import eval.metrics`` does not load sympy.
"""

from __future__ import annotations

from typing import Any

from eval.metrics import pass_at_k

__all__ = ["pass_at_k", "grade_answer", "GradeResult", "Grader"]


def __getattr__(name: str) -> Any:
    if name in ("grade_answer", "GradeResult"):
        from eval import grading

        return getattr(grading, name)
    if name == "Grader":
        from eval.grader import Grader

        return Grader
    raise AttributeError(f"module 'eval' has no attribute {name!r}")
