"""Training data: rows with a prompt and an answer, served in seeded, resumable order.

Sources: ``builtin:arithmetic`` (the embedded default's synthetic task, generated from the seed),
a JSONL file, or a parquet file in verl's layout (``prompt`` = chat messages, the answer in
``reward_model.ground_truth``, the row's ``data_source``). Every row must hold the prompt and the
answer: a missing field, invalid JSON or an unreadable parquet is a :class:`DatasetError` that
names the file and the row (the one dataset error of the toolkit).

:class:`PromptSampler` walks a seeded permutation per epoch; its state is ``(epoch, position)``,
saved in checkpoints so a resumed run sees the same prompts in the same order.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soft_thinking.core.config import ConfigError
from soft_thinking.errors import SoftGRPOError
from soft_thinking.io import atomic_write_text

REQUIRED_KEYS: tuple[str, ...] = ("prompt", "answer")


class DatasetError(SoftGRPOError, ValueError):
    """A dataset file or row that cannot be used; the message names the file, the row and the field."""


@dataclass(frozen=True)
class Example:
    uid: str
    prompt: str  # user text (the chat template is applied by the trainer)
    answer: str
    data_source: str | None = None  # the row's own (verl parquet); None: data.data_source


def _from_rows(rows: list[dict[str, Any]], prompt_key: str, answer_key: str, source: str) -> list[Example]:
    out = []
    for i, row in enumerate(rows):
        prompt = row.get(prompt_key)
        answer = row.get(answer_key)
        if answer is None and isinstance(row.get("reward_model"), dict):  # verl parquet layout
            answer = row["reward_model"].get("ground_truth")
        if isinstance(prompt, list):  # chat messages: the last user turn
            users = [m.get("content") or m.get("value") for m in prompt if isinstance(m, dict)]
            prompt = users[-1] if users else None
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            raise DatasetError(f"{source}: row {i} has no prompt field {prompt_key!r}")
        if answer is None:
            raise DatasetError(f"{source}: row {i} has no answer field {answer_key!r}")
        ds = row.get("data_source")
        out.append(Example(uid=str(row.get("id", f"{source}:{i}")), prompt=str(prompt), answer=str(answer),
                           data_source=str(ds) if ds else None))
    if not out:
        raise DatasetError(f"{source}: no rows")
    return out


def load_examples(spec: str, split: str, size: int, seed: int, prompt_key: str = "prompt", answer_key: str = "answer") -> list[Example]:
    """Load ``spec`` (``builtin:arithmetic[?num_terms=3&digits=2]``, ``*.jsonl`` or ``*.parquet``)."""
    if spec.startswith("builtin:"):
        from softgrpo.tasks.arithmetic import make_dataset

        kw = parse_builtin(spec)
        try:
            rows = make_dataset(split, size, seed=seed, **kw)
        except ValueError as exc:  # e.g. a problem space too small for the requested size
            raise ConfigError(f"data files {spec!r} ({split}, {size} rows): {exc}") from exc
        return _from_rows(rows, "prompt", "answer", spec)
    path = Path(spec)
    if not path.exists():
        raise ConfigError(f"data files {spec!r}: no such file")
    if path.suffix == ".jsonl":
        rows = load_jsonl(path, required_keys=())
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"{path}: not a readable parquet file ({exc})") from exc
    else:
        raise ConfigError(f"data files {spec!r}: allowed a .jsonl or .parquet file or 'builtin:arithmetic'")
    return _from_rows(rows, prompt_key, answer_key, str(path))


BUILTIN_TASKS = ("arithmetic",)


def parse_builtin(spec: str, key: str = "data files") -> dict[str, Any]:
    """The task options of ``builtin:arithmetic?num_terms=3&digits=2&operators=+,-``, each checked
    (:class:`ConfigError` naming ``key``, the option and the allowed values)."""
    from dataclasses import fields

    from softgrpo.tasks.arithmetic import ArithmeticTask

    name, _, query = spec[len("builtin:") :].partition("?")
    if name not in BUILTIN_TASKS:
        raise ConfigError(f"{key}={spec!r}: unknown builtin task {name!r}; allowed: {list(BUILTIN_TASKS)}")
    allowed = {f.name for f in fields(ArithmeticTask)} - {"prompt_template"}
    kw: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        k, sep, v = part.partition("=")
        if not sep or k not in allowed:
            raise ConfigError(f"{key}={spec!r}: option {part!r} is invalid: allowed k=v with k in {sorted(allowed)}")
        if k == "operators":
            kw[k] = tuple(v.split(","))
        elif v.isdigit():
            kw[k] = int(v)
        else:
            raise ConfigError(f"{key}={spec!r}: option {k}={v!r} is invalid: allowed an integer")
    try:
        ArithmeticTask(**kw)
    except ValueError as exc:
        raise ConfigError(f"{key}={spec!r}: {exc}") from exc
    return kw


def save_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write one JSON object per line (UTF-8), atomically (:func:`soft_thinking.io.atomic_write_text`)."""
    lines = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DatasetError(f"row {i} is a {type(row).__name__}, expected a dict")
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def load_jsonl(path: str | os.PathLike[str], required_keys: Sequence[str] = REQUIRED_KEYS) -> list[dict[str, Any]]:
    """Read a JSONL dataset, checking every row is an object holding ``required_keys``.

    Blank lines are skipped. Row indices in errors count data rows from 0.

    Raises:
        FileNotFoundError: no such file.
        DatasetError: invalid JSON or UTF-8, a non-object row, or a missing required key.
    """
    path = os.fspath(path)
    rows: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(f)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from exc
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        idx = len(rows)
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: row {idx} (line {lineno}) is not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: row {idx} (line {lineno}) is a {type(row).__name__}, expected an object")
        for key in required_keys:
            if key not in row:
                raise DatasetError(f"{path}: row {idx} (line {lineno}) is missing required key {key!r}")
        rows.append(row)
    return rows


class PromptSampler:
    """Batches of examples in a seeded permutation per epoch; state = (epoch, position)."""

    def __init__(self, examples: list[Example], batch_size: int, seed: int, shuffle: bool = True) -> None:
        if batch_size > len(examples):
            raise ConfigError(f"data.train_batch_size={batch_size} is larger than the dataset ({len(examples)} rows)")
        self.examples, self.batch_size, self.seed, self.shuffle = examples, batch_size, seed, shuffle
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.examples)))
        if self.shuffle:
            random.Random(f"softgrpo-data:{self.seed}:{epoch}").shuffle(order)
        return order

    def next_batch(self) -> list[Example]:
        if self.position + self.batch_size > len(self._order):  # drop the ragged tail
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        idx = self._order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return [self.examples[i] for i in idx]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
