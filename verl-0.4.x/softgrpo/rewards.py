"""Reward functions: math-verify grading by default, any function by dotted path (verl style).

A reward function has verl's ``custom_reward_function`` signature::

    fn(data_source: str, solution_str: str, ground_truth, extra_info: dict | None = None) -> float

The default (``custom_reward_function.path: null``) grades the answer after the think-end (last
``\\boxed{}``) with math-verify in :class:`eval.grader.Grader`'s process pool, the same grading as
the evaluation harness: a timeout or a parse failure scores 0 and is *counted* (the trainer logs
``reward/timeouts`` and ``reward/parse_errors`` every step).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from soft_thinking.core.config import ConfigError

RewardFn = Callable[..., float]


def load_reward_function(path: str, name: str = "compute_score") -> RewardFn:
    """Import ``pkg.module:fn`` / ``pkg.module.fn`` / a ``.py`` file path + ``name``; clear errors."""
    if path.endswith(".py"):
        spec = importlib.util.spec_from_file_location("softgrpo_custom_reward", path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"custom_reward_function.path={path!r}: cannot load this file")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except FileNotFoundError as err:
            raise ConfigError(f"custom_reward_function.path={path!r}: no such file") from err
        attr = name
    else:
        mod_name, sep, attr = path.partition(":")
        if not sep:
            mod_name, _, attr = path.rpartition(".")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as err:
            raise ConfigError(f"custom_reward_function.path={path!r}: cannot import module {mod_name!r} ({err})") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"custom_reward_function.path={path!r}: {attr!r} is not a callable in {module.__name__}")
    return fn


@dataclass
class RewardScorer:
    """Scores a batch of completions; keeps counts of grading outcomes."""

    fn: RewardFn | None = None  # None: the math-verify grader
    timeout_s: float = 10.0
    workers: int = 2
    gold_format: str = "expr"
    counts: Counter = field(default_factory=Counter)
    _grader: Any = None

    def __call__(self, data_source: str, texts: Sequence[str], answers: Sequence[Any]) -> list[float]:
        if self.fn is not None:
            scores = [float(self.fn(data_source, t, a, None)) for t, a in zip(texts, answers)]
            self.counts["custom"] += len(scores)
            return scores
        if self._grader is None:
            from eval.grader import Grader

            self._grader = Grader(workers=self.workers, timeout_s=self.timeout_s)
        results = self._grader.grade([(t, a, self.gold_format) for t, a in zip(texts, answers)])
        self.counts.update(r.status for r in results)
        return [1.0 if r.correct else 0.0 for r in results]

    def close(self) -> None:
        if self._grader is not None:
            self._grader.close()
            self._grader = None


def make_scorer(path: str | None, name: str, timeout_s: float, workers: int, gold_format: str = "expr") -> RewardScorer:
    fn = load_reward_function(path, name) if path else None
    return RewardScorer(fn=fn, timeout_s=timeout_s, workers=workers, gold_format=gold_format)
