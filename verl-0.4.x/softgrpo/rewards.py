"""The one reward of the toolkit: the trainer, the evaluation and the verl plug-in all grade here.

verl's ``custom_reward_function`` signature (``verl/trainer/ppo/reward.py`` ``get_custom_reward_fn``;
``verl/workers/reward_manager/naive.py`` calls it with keywords)::

    compute_score(data_source, solution_str, ground_truth, extra_info=None, **reward_kwargs) -> float

1.0 when the answer after ``</think>`` (last ``\\boxed{}``) equals ``ground_truth``, else 0.0
(spec §4). Built on the evaluation's engine-free leaves, so there is one grading rule:

- :func:`eval.grading.grade_answer` extracts and compares with math-verify;
- :class:`eval.grader.Grader` runs it in worker processes with a per-answer timeout. math-verify's
  own signal-based timeouts only work on the main thread and are off; verl calls the reward from
  executor threads, so :func:`compute_score` works from any thread;
- the gold format comes from the data source (:func:`gold_format`): plain expressions for
  ``arithmetic``/AIME/GSM8K, LaTeX for MATH/AMC/DeepScaleR (``3\\sqrt{7}``, ``\\pi``, ``(1,2)``);
- ``require_think_end`` (default True): a completion with no ``</think>`` (thinking cut at the
  token budget) scores 0 with status ``no_think_end``, so a ``\\boxed{}`` inside unfinished
  thinking earns nothing. Pass ``False`` for a model that has no think-end.

Every outcome is counted (``ok``, ``no_answer``, ``parse_error``, ``timeout``, ``no_think_end``,
``error``): :data:`STATUS_COUNTS` for :func:`compute_score`, :attr:`RewardScorer.counts` for the
batched scorer the trainer uses; the trainer logs them as ``reward/<status>_count``.

Grading is bounded and total: whatever a model writes (a megabyte of braces, a 5,000-digit
integer), that sample gets 0.0 or 1.0 and a status; a sample whose grading fails (``timeout``, a dead
worker, ``error`` when the grade function raised) scores 0.0 and is counted, never raised for the
batch. Only a bad configuration raises (:class:`ConfigError`): an unknown ``extra_info["gold_format"]``,
a bad ``SOFTGRPO_GRADE_WORKERS``/``SOFTGRPO_GRADE_TIMEOUT``, or workers/timeout out of range.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eval.grader import Grader
from eval.grading import BENCHMARK_GOLD_FORMAT, GOLD_FORMATS, GradeResult
from soft_thinking.core.config import ConfigError

RewardFn = Callable[..., float]
log = logging.getLogger(__name__)

# data_source (verl's name, lower case) -> gold format; matched exactly, then by substring in order.
DATA_SOURCE_GOLD_FORMAT: dict[str, str] = {
    **BENCHMARK_GOLD_FORMAT,
    "arithmetic": "expr", "aime": "expr", "gsm8k": "expr",
    "deepscaler": "latex", "math": "latex", "amc": "latex",
    "olympiad": "latex_dollar", "gpqa": "choice",
}
DEFAULT_GOLD_FORMAT = "latex"  # "$204$" parses as well as "204"; "3\\sqrt{7}" only parses as LaTeX


def gold_format(data_source: str | None, extra_info: dict[str, Any] | None = None) -> str:
    """The gold format of a data source: ``extra_info["gold_format"]`` if given, else by name."""
    if extra_info and extra_info.get("gold_format"):
        fmt = str(extra_info["gold_format"])
        if fmt not in GOLD_FORMATS:
            raise ConfigError(f"extra_info['gold_format']={fmt!r} is invalid: allowed {list(GOLD_FORMATS)}")
        return fmt
    key = (data_source or "").lower()
    if key in DATA_SOURCE_GOLD_FORMAT:
        return DATA_SOURCE_GOLD_FORMAT[key]
    for name, fmt in DATA_SOURCE_GOLD_FORMAT.items():
        if name in key:
            return fmt
    return DEFAULT_GOLD_FORMAT


def grade_completions(grader: Grader, data_source: str | Sequence[str] | None, texts: Sequence[str],
                      golds: Sequence[Any], extra_infos: Sequence[dict[str, Any] | None] | None = None, *,
                      require_think_end: bool = True) -> list[GradeResult]:
    """Grade a batch in ``grader``'s pool: the one code path behind every reward.

    ``data_source``: one name for the batch or one per completion (a mixed validation set).
    """
    if len(texts) != len(golds):
        raise ValueError(f"{len(texts)} completions but {len(golds)} gold answers")
    infos = list(extra_infos) if extra_infos is not None else [None] * len(texts)
    sources = [data_source] * len(texts) if data_source is None or isinstance(data_source, str) else list(data_source)
    tasks = [(t, g, gold_format(src, info)) for t, g, src, info in zip(texts, golds, sources, infos, strict=True)]
    return grader.grade(tasks, require_think_end=require_think_end)


# -- verl's custom reward function (any thread) ---------------------------------------------------
_lock = threading.Lock()
_grader: Grader | None = None
STATUS_COUNTS: Counter[str] = Counter()


def check_pool(workers: Any, timeout_s: Any, where: str = "custom_reward_function") -> tuple[int, float]:
    """``(workers, timeout_s)`` checked: an integer >= 1 and a finite number > 0 (else ConfigError)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{where} workers={workers!r} is invalid: allowed an integer >= 1")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < math.inf:
        raise ConfigError(f"{where} timeout_s={timeout_s!r} is invalid: allowed a finite number of seconds > 0")
    return workers, float(timeout_s)


def _env_number(name: str, default: str, kind: type) -> Any:
    raw = os.environ.get(name, default)
    try:
        return kind(raw)
    except ValueError:
        allowed = "an integer >= 1" if kind is int else "a finite number of seconds > 0"
        raise ConfigError(f"{name}={raw!r} is invalid: allowed {allowed}") from None


def _shared_grader() -> Grader:
    """One process pool per process; size and timeout from ``SOFTGRPO_GRADE_WORKERS``/``_TIMEOUT``."""
    global _grader
    if _grader is None:
        workers, timeout_s = check_pool(_env_number("SOFTGRPO_GRADE_WORKERS", "2", int),
                                        _env_number("SOFTGRPO_GRADE_TIMEOUT", "10", float), "environment")
        _grader = Grader(workers=workers, timeout_s=timeout_s)
        atexit.register(_grader.close)
    return _grader


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                  require_think_end: bool = True) -> float:
    """1.0 if ``solution_str`` answers ``ground_truth`` correctly, else 0.0 (verl's signature)."""
    with _lock:  # the pool is not re-entrant; verl calls from several executor threads
        res = grade_completions(_shared_grader(), data_source, [solution_str], [ground_truth], [extra_info],
                                require_think_end=require_think_end)[0]
        STATUS_COUNTS[res.status] += 1
    return 1.0 if res.correct else 0.0


# -- the trainer's batched scorer -------------------------------------------------------------------
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
    """Scores a batch of completions with :func:`grade_completions` (or a custom function, called
    per sample with verl's signature); keeps counts of grading outcomes.

    A sample whose grading fails scores 0.0 and is counted under its status (``timeout``,
    ``parse_error``, ``error``); the call never raises for one sample. :attr:`failures` keeps the
    ``(status, detail)`` of the failed samples of the last call, for the trainer to report."""

    fn: RewardFn | None = None  # None: the math-verify reward of this module
    timeout_s: float = 10.0
    workers: int = 2
    require_think_end: bool = True
    counts: Counter = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    _grader: Grader | None = None

    FAILED = ("timeout", "parse_error", "error")

    def __post_init__(self) -> None:
        check_pool(self.workers, self.timeout_s)  # before the first batch, not at it

    def __call__(self, data_source: str | Sequence[str], texts: Sequence[str], answers: Sequence[Any],
                 extra_infos: Sequence[dict[str, Any] | None] | None = None) -> list[float]:
        if self.fn is not None:
            return self._custom(data_source, texts, answers, extra_infos)
        if self._grader is None:
            self._grader = Grader(workers=self.workers, timeout_s=self.timeout_s)
        results = grade_completions(self._grader, data_source, texts, answers, extra_infos,
                                    require_think_end=self.require_think_end)
        self.counts.update(r.status for r in results)
        self.failures = [(r.status, r.detail or "") for r in results if r.status in self.FAILED]
        return [1.0 if r.correct else 0.0 for r in results]

    def _custom(self, data_source: str | Sequence[str], texts: Sequence[str], answers: Sequence[Any],
                extra_infos: Sequence[dict[str, Any] | None] | None) -> list[float]:
        """The custom function per sample. A sample on which it raises or returns a non-finite or
        non-number score gets 0.0 and status ``error`` (counted, in :attr:`failures`); only a batch
        on which it fails for every sample raises (:class:`ConfigError`: the function is broken)."""
        infos = list(extra_infos) if extra_infos is not None else [None] * len(texts)
        sources = [data_source] * len(texts) if isinstance(data_source, str) else list(data_source)
        scores: list[float] = []
        self.failures = []
        for src, t, a, i in zip(sources, texts, answers, infos, strict=True):
            try:
                score = float(self.fn(src, t, a, i))  # type: ignore[misc]
                if not math.isfinite(score):
                    raise ValueError(f"score {score} is not finite")
            except Exception as exc:  # this sample alone: counted and reported, never hidden
                if not self.failures:
                    log.warning("custom reward function failed on a sample (status 'error')", exc_info=True)
                self.failures.append(("error", f"custom reward: {type(exc).__name__}: {exc}"[:300]))
                score = 0.0
            scores.append(score)
        if texts and len(self.failures) == len(texts):
            raise ConfigError(f"custom_reward_function failed on all {len(texts)} samples of the batch; first: "
                              f"{self.failures[0][1]}")
        self.counts["custom"] += len(scores) - len(self.failures)
        self.counts["error"] += len(self.failures)
        return scores

    def close(self) -> None:
        if self._grader is not None:
            self._grader.close()
            self._grader = None

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_scorer(path: str | None, name: str, timeout_s: float, workers: int,
                require_think_end: bool = True) -> RewardScorer:
    fn = load_reward_function(path, name) if path else None
    return RewardScorer(fn=fn, timeout_s=timeout_s, workers=workers, require_think_end=require_think_end)
