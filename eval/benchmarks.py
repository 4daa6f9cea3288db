"""Benchmark loading (spec §6): local JSON in the original's format, or the Hugging Face hub.

Local format (``<data_dir>/<benchmark>.json``): a list of
``{"prompt": [{"from": "user", "value": PROBLEM}], "final_answer": GOLD, ...}``; ``final_answer``
may be a string or a number. Problem ids are the 0-based positions in the file.

Hub: each benchmark has a default ``(dataset id, revision, split, problem field, answer field)``
in :data:`HUB_SOURCES`; pin ``revision`` to a commit hash for reproducible runs
(``--hub-revision``). Offline, loading fails with a message that points at ``--data-dir``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soft_thinking.errors import SoftGRPOError

MAIN_BENCHMARKS = ("aime2024", "aime2025", "amc23", "math500", "gsm8k")
EXTRA_BENCHMARKS = ("gpqa_diamond", "olympiad_bench")
ALL_BENCHMARKS = MAIN_BENCHMARKS + EXTRA_BENCHMARKS
DATA_DIR_ENV = "SOFTGRPO_BENCHMARK_DIR"


@dataclass(frozen=True)
class HubSource:
    dataset: str
    revision: str
    split: str
    problem_field: str
    answer_field: str
    config: str | None = None


# User defaults; override the revision with a commit hash to pin a run.
HUB_SOURCES: dict[str, HubSource] = {
    "aime2024": HubSource("HuggingFaceH4/aime_2024", "main", "train", "problem", "answer"),
    "aime2025": HubSource("MathArena/aime_2025", "main", "train", "problem", "answer"),
    "amc23": HubSource("math-ai/amc23", "main", "test", "question", "answer"),
    "math500": HubSource("HuggingFaceH4/MATH-500", "main", "test", "problem", "answer"),
    "gsm8k": HubSource("openai/gsm8k", "main", "test", "question", "answer", config="main"),
}


class BenchmarkError(SoftGRPOError, ValueError):
    """A benchmark name, file or record is invalid; the message says which and how to fix it."""


@dataclass(frozen=True)
class Problem:
    benchmark: str
    problem_id: int
    problem: str
    gold: Any


def check_benchmark_names(names: list[str]) -> list[str]:
    bad = [n for n in names if n not in ALL_BENCHMARKS]
    if bad or not names:
        raise BenchmarkError(f"--benchmarks {bad or names} is invalid: allowed a comma list of {list(ALL_BENCHMARKS)}")
    return names


def default_data_dir() -> Path | None:
    """``$SOFTGRPO_BENCHMARK_DIR`` when set, else None."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def _parse_record(benchmark: str, i: int, rec: Any, path: Path) -> Problem:
    where = f"{path} record {i}"
    if not isinstance(rec, dict) or "prompt" not in rec or "final_answer" not in rec:
        raise BenchmarkError(f"{where}: expected an object with 'prompt' and 'final_answer'")
    turns = rec["prompt"]
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], dict) or "value" not in turns[0]:
        raise BenchmarkError(f"{where}: 'prompt' must be a list of {{'from': 'user', 'value': str}} turns")
    user = [t for t in turns if t.get("from") in ("user", "human")]
    problem = (user or turns)[0]["value"]
    gold = rec["final_answer"]
    if not isinstance(problem, str) or not isinstance(gold, (str, int, float)) or isinstance(gold, bool):
        raise BenchmarkError(f"{where}: 'value' must be a string and 'final_answer' a string or number")
    return Problem(benchmark, i, problem, gold)


def load_local(benchmark: str, data_dir: Path | str) -> list[Problem]:
    """Load ``<data_dir>/<benchmark>.json``."""
    path = Path(data_dir) / f"{benchmark}.json"
    if not path.is_file():
        raise BenchmarkError(f"benchmark file {path} not found (--data-dir must hold <benchmark>.json files)")
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"benchmark file {path} is not valid JSON ({exc}); re-download or fix it") from exc
    if not isinstance(data, list) or not data:
        raise BenchmarkError(f"{path}: expected a non-empty JSON list of problems")
    return [_parse_record(benchmark, i, rec, path) for i, rec in enumerate(data)]


def _gsm8k_gold(answer: str) -> str:
    """GSM8K hub answers end with ``#### 1,234``; the gold is the number after ``####``."""
    return answer.split("####")[-1].strip().replace(",", "")


def load_hub(benchmark: str, revision: str | None = None) -> list[Problem]:
    """Load a benchmark from its default hub dataset (pinned by ``revision`` when given)."""
    if benchmark not in HUB_SOURCES:
        raise BenchmarkError(
            f"benchmark {benchmark!r} has no hub source: allowed {sorted(HUB_SOURCES)}; use --data-dir for the others"
        )
    src = HUB_SOURCES[benchmark]
    import datasets
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        ds = datasets.load_dataset(src.dataset, src.config, split=src.split, revision=revision or src.revision)
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, HfHubHTTPError, ConnectionError) as exc:
        raise BenchmarkError(
            f"could not load {benchmark} from the hub dataset {src.dataset}@{revision or src.revision} "
            f"({type(exc).__name__}). Offline? Point --data-dir (or ${DATA_DIR_ENV}) at a directory "
            f"holding {benchmark}.json in the original's JSON format."
        ) from exc
    out = []
    for i, row in enumerate(ds):
        gold = row[src.answer_field]
        if benchmark == "gsm8k":
            gold = _gsm8k_gold(gold)
        out.append(Problem(benchmark, i, row[src.problem_field], gold))
    return out


def load_benchmark(
    benchmark: str, data_dir: Path | str | None = None, *, limit: int | None = None, hub_revision: str | None = None
) -> list[Problem]:
    """Local JSON when ``data_dir`` (or ``$SOFTGRPO_BENCHMARK_DIR``) is set, else the hub.

    ``limit`` keeps the first N problems.
    """
    check_benchmark_names([benchmark])
    if limit is not None and limit < 1:
        raise BenchmarkError(f"--limit={limit} is invalid: allowed an integer >= 1")
    data_dir = data_dir if data_dir is not None else default_data_dir()
    problems = load_local(benchmark, data_dir) if data_dir is not None else load_hub(benchmark, hub_revision)
    return problems[:limit] if limit else problems
