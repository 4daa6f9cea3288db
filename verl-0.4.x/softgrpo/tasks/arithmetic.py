"""Synthetic multi-term arithmetic: the embedded default's verifiable reasoning task.

A problem is a chain such as ``12+34-56`` of ``num_terms`` integers with ``digits`` digits each,
joined by operators drawn from ``operators`` (``+`` and optionally ``-``), evaluated left to right.
Each example is a dict::

    {"id": "arith-3f2a...", "prompt": "Compute 12+34-56.", "answer": "-10",
     "scratchpad": "<think>12+34=46\\n46-56=-10</think>\\\\boxed{-10}"}

The scratchpad is the SFT warm-start target: one line per partial result inside
``<think>...</think>``, then ``\\boxed{ANSWER}``. It contains exactly one ``</think>``; the
consumer appends the tokenizer's EOS when it trains on it.

Train and test are disjoint by construction: a problem belongs to the test split iff the
SHA-256 of its expression is 0 modulo ``TEST_MODULUS``; each split draws from its own seeded stream
and keeps only its own problems, without duplicates.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from soft_thinking.text import THINK_END
from softgrpo.reference.data import REQUIRED_KEYS, DatasetError, load_jsonl, save_jsonl  # noqa: F401  (re-exported)

SPLITS: tuple[str, ...] = ("train", "test")
ALLOWED_OPERATORS: tuple[str, ...] = ("+", "-")
TEST_MODULUS: int = 10
THINK_START = "<think>"
BOXED_OPEN = "\\boxed{"


@dataclass(frozen=True)
class ArithmeticTask:
    """Shape of the generated problems.

    Attributes:
        num_terms: integers per problem (>= 2).
        digits: digits per integer (1..9); numbers are drawn from ``[10**(digits-1), 10**digits)``.
        operators: operators to draw from, a non-empty subset of ``("+", "-")``.
        prompt_template: user text; must contain ``{expr}``.
    """

    num_terms: int = 3
    digits: int = 2
    operators: tuple[str, ...] = ("+",)
    prompt_template: str = "Compute {expr}."

    def __post_init__(self) -> None:
        if not isinstance(self.num_terms, int) or isinstance(self.num_terms, bool) or self.num_terms < 2:
            raise ValueError(f"ArithmeticTask.num_terms must be an int >= 2, got {self.num_terms!r}")
        if not isinstance(self.digits, int) or isinstance(self.digits, bool) or not 1 <= self.digits <= 9:
            raise ValueError(f"ArithmeticTask.digits must be an int in 1..9, got {self.digits!r}")
        ops = tuple(self.operators)
        bad = [op for op in ops if op not in ALLOWED_OPERATORS]
        if not ops or bad:
            raise ValueError(
                f"ArithmeticTask.operators={self.operators!r} is invalid: "
                f"a non-empty subset of {ALLOWED_OPERATORS}"
            )
        object.__setattr__(self, "operators", tuple(dict.fromkeys(ops)))
        if "{expr}" not in self.prompt_template:
            raise ValueError(f"ArithmeticTask.prompt_template must contain '{{expr}}', got {self.prompt_template!r}")

    def sample_expression(self, rng: random.Random) -> tuple[list[int], list[str]]:
        """Draw ``(numbers, operators)`` with ``len(operators) == num_terms - 1``."""
        lo, hi = 10 ** (self.digits - 1), 10**self.digits - 1
        numbers = [rng.randint(lo, hi) for _ in range(self.num_terms)]
        ops = [rng.choice(self.operators) for _ in range(self.num_terms - 1)]
        return numbers, ops


def format_expression(numbers: Sequence[int], ops: Sequence[str]) -> str:
    """``[12, 34, 56], ["+", "-"] -> "12+34-56"``."""
    if len(ops) != len(numbers) - 1:
        raise ValueError(f"need len(ops) == len(numbers) - 1, got {len(ops)} ops for {len(numbers)} numbers")
    parts = [str(numbers[0])]
    for op, num in zip(ops, numbers[1:]):
        parts.append(f"{op}{num}")
    return "".join(parts)


def partial_results(numbers: Sequence[int], ops: Sequence[str]) -> list[int]:
    """Left-to-right running results after each operator (the last one is the answer)."""
    acc = numbers[0]
    out = []
    for op, num in zip(ops, numbers[1:]):
        if op == "+":
            acc += num
        elif op == "-":
            acc -= num
        else:
            raise ValueError(f"unsupported operator {op!r}: allowed {ALLOWED_OPERATORS}")
        out.append(acc)
    return out


def format_scratchpad(numbers: Sequence[int], ops: Sequence[str]) -> str:
    """The SFT target: ``<think>a+b=s1\\ns1+c=s2</think>\\boxed{s2}`` (no EOS)."""
    results = partial_results(numbers, ops)
    lines = []
    prev = numbers[0]
    for op, num, res in zip(ops, numbers[1:], results):
        lines.append(f"{prev}{op}{num}={res}")
        prev = res
    body = "\n".join(lines)
    return f"{THINK_START}{body}{THINK_END}{BOXED_OPEN}{results[-1]}}}"


def split_of(expression: str) -> str:
    """``"test"`` iff the SHA-256 of ``expression`` is 0 mod ``TEST_MODULUS``, else ``"train"``."""
    digest = hashlib.sha256(expression.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") % TEST_MODULUS == 0 else "train"


def make_example(numbers: Sequence[int], ops: Sequence[str], task: ArithmeticTask | None = None) -> dict[str, str]:
    """One dataset row (keys ``id``, ``prompt``, ``answer``, ``scratchpad``) for a given problem."""
    task = task or ArithmeticTask()
    expr = format_expression(numbers, ops)
    return {
        "id": "arith-" + hashlib.sha256(expr.encode("utf-8")).hexdigest()[:16],
        "prompt": task.prompt_template.format(expr=expr),
        "answer": str(partial_results(numbers, ops)[-1]),
        "scratchpad": format_scratchpad(numbers, ops),
    }


def make_dataset(split: str, n: int, seed: int = 0, **task_kw: Any) -> list[dict[str, str]]:
    """Generate ``n`` distinct problems of ``split`` deterministically from ``seed``.

    Args:
        split: ``"train"`` or ``"test"``.
        n: number of rows (>= 0).
        seed: stream seed; the same ``(split, n, seed, task_kw)`` always gives the same rows, and a
            longer dataset starts with the rows of a shorter one.
        **task_kw: fields of :class:`ArithmeticTask`.

    Raises:
        ValueError: unknown split, negative ``n``, bad task fields, or a problem space too small to
            hold ``n`` distinct problems of that split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: allowed {', '.join(SPLITS)}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    task = ArithmeticTask(**task_kw)
    rng = random.Random(f"softgrpo-arithmetic:{split}:{seed}")
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    max_draws = 100 * n + 10_000
    for _ in range(max_draws):
        if len(rows) == n:
            break
        numbers, ops = task.sample_expression(rng)
        expr = format_expression(numbers, ops)
        if expr in seen or split_of(expr) != split:
            continue
        seen.add(expr)
        rows.append(make_example(numbers, ops, task))
    if len(rows) < n:
        raise ValueError(
            f"could only find {len(rows)} distinct {split} problems of {n} requested for {task}; "
            "use more terms/digits/operators or a smaller n"
        )
    return rows
