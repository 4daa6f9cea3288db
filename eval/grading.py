"""Answer extraction and grading of one completion (spec §6).

Rules, in order:

1. **Answer region.** Only the text after the first think-end string ``</think>`` is graded (the
   engine switches to the answer phase at the first think-end). An answer that appears only
   inside the thinking grades wrong. Without a think-end (thinking cut at the token budget, or a
   model that never thinks) it depends on ``require_think_end``: ``True`` scores 0 with status
   ``no_think_end`` (the trainer's reward default: a ``\\boxed{}`` inside unfinished thinking must
   not earn reward); ``False`` grades the whole completion (the evaluation's default, see
   :mod:`eval.cli`).
2. **Markdown bold** ``**73**`` is unwrapped to ``73`` (math-verify would otherwise read ``**`` as
   a power operator and extract ``73**``).
3. **Boxed answers first.** When the region contains ``\\boxed{...}`` (or ``\\fbox{...}``) the
   content of the *last* one is the answer (the reward rule "last \\boxed{}"; math-verify on its
   own would merge several boxes into a set). Otherwise math-verify's own extraction runs on
   the region ("final answer is ...", last LaTeX / plain expression).
4. **Gold answers** are parsed by format: ``expr`` (plain expression: AIME, GSM8K), ``latex``
   (LaTeX wrapped in ``$...$``: MATH-500, AMC), ``latex_dollar`` (already contains ``$``:
   OlympiadBench; every ``$`` and a trailing period are removed, then it is wrapped once) and ``choice`` (a letter A-D: GPQA-diamond).

5. **Bounds** (any model output gets a verdict in time linear in its length): the last box is
   found in one pass (:func:`last_boxed`); integers are compared as digit strings
   (:func:`int_equal`; ``int()`` refuses more than 4,300 digits); a non-integer boxed answer longer
   than :data:`MAX_BOXED_CHARS` is a ``parse_error`` without parsing; without a box only the last
   :data:`FALLBACK_TAIL_CHARS` characters go to math-verify's extraction.

math-verify's signal-based timeouts are switched off here (``parsing_timeout=None``,
``timeout_seconds=None``); :class:`eval.grader.Grader` runs this function in worker processes
and enforces the per-answer timeout by killing the worker.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

from soft_thinking.text import THINK_END

# Our Grader enforces the timeout; math-verify's "timeout is disabled" warning is expected.
logging.getLogger("math_verify").setLevel(logging.ERROR)

STATUSES = ("ok", "no_answer", "parse_error", "timeout", "no_think_end", "error")
MAX_BOXED_CHARS = 2_000
"""A boxed answer longer than this (and not a plain integer) is a ``parse_error`` without parsing."""
FALLBACK_TAIL_CHARS = 10_000
"""Without a ``\\boxed{}``, math-verify's extraction reads only the last this-many characters."""
GOLD_FORMATS = ("expr", "latex", "latex_dollar", "choice")
BENCHMARK_GOLD_FORMAT: dict[str, str] = {
    "aime2024": "expr",
    "aime2025": "expr",
    "gsm8k": "expr",
    "amc23": "latex",
    "math500": "latex",
    "olympiad_bench": "latex_dollar",
    "gpqa_diamond": "choice",
}

Status = Literal["ok", "no_answer", "parse_error", "timeout", "no_think_end", "error"]

_BOLD = re.compile(r"\*\*([^*\n]+?)\*\*")
_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"[{}]")
_CHOICES = ("A", "B", "C", "D")
_INT = re.compile(r"-?\d+")
_WARM_UP_ANSWERS = (
    ("\\frac{13}{7}", "latex"), ("\\left( 2, \\frac{\\pi}{3} \\right)", "latex"), ("(-\\infty, 2]", "latex"),
    ("3\\sqrt{7}", "latex"), ("\\text{Alice}", "latex"), ("45^\\circ", "latex"), ("x^2 + 1", "latex"),
    ("\\{1, 2\\}", "latex"), ("$\\frac{1}{2 n+2}$", "latex_dollar"), ("0.5", "expr"),
    ("\\dfrac{\\sqrt{3}}{2}", "latex"), ("[-2, 7)", "latex"), ("x \\in [-3,5]", "latex"), ("m - n", "latex"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "latex"), ("3\\pi", "latex"), ("\\$12.50", "latex"),
    ("10\\%", "latex"), ("y = 3x - 1", "latex"), ("\\left[ \\frac{\\pi}{6}, \\frac{3 \\pi}{2} \\right]", "latex"),
    ("(2,-5,7,11)", "latex"), ("\\text{(B)}", "latex"), ("-\\frac{1}{3}, 2", "latex"), ("\\tfrac{9}{2}", "latex"),
    ("a^2 b^3", "latex"), ("\\log_2 5", "latex"), ("\\cos 2x", "latex"), ("2.75", "latex"), ("e^{i\\pi}", "latex"),
    ("\\frac{a+b}{c-d}", "latex"), ("2^{1009}", "latex"), ("n!", "latex"), ("\\binom{8}{3}", "latex"),
    ("$(1,8,19), (2,7,13)$", "latex_dollar"), ("$2n-2$", "latex_dollar"), ("$x=1$", "latex_dollar"),
)
_warmed = False


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one completion. ``correct`` is False unless ``status == "ok"``."""

    correct: bool
    extracted: str | None
    status: Status
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gold_format_for(benchmark_or_gold_format: str) -> str:
    """Map a benchmark name (``math500``) or a gold format (``latex``) to a gold format."""
    key = benchmark_or_gold_format.lower()
    if key in GOLD_FORMATS:
        return key
    if key in BENCHMARK_GOLD_FORMAT:
        return BENCHMARK_GOLD_FORMAT[key]
    raise ValueError(
        f"benchmark_or_gold_format={benchmark_or_gold_format!r} is invalid: allowed a benchmark "
        f"{sorted(BENCHMARK_GOLD_FORMAT)} or a gold format {list(GOLD_FORMATS)}"
    )


def answer_region(completion: str, think_end: str = THINK_END) -> str:
    """Text after the first ``think_end``; the whole text when there is none."""
    head, sep, tail = completion.partition(think_end)
    return tail if sep else completion


def missing_think_end(completion: str, think_end: str = THINK_END) -> GradeResult | None:
    """The ``no_think_end`` result when ``completion`` has no ``think_end``, else None (grade it)."""
    if think_end in completion:
        return None
    return GradeResult(False, None, "no_think_end", f"no {think_end!r} in the completion (thinking cut off?)")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` with balanced braces, else None.

    An unclosed last box (truncated generation) falls back to the previous closed one. One pass over
    the braces with a stack matches every ``{`` to its ``}`` (time linear in ``len(text)``); the
    answer is the box whose opening brace is the rightmost one that closes.
    """
    box_opens = {m.end() - 1 for m in _BOX_START.finditer(text)}  # index of each box's "{"
    if not box_opens:
        return None
    stack: list[int] = []
    best: tuple[int, int] | None = None
    for m in _BRACE.finditer(text, min(box_opens)):  # a "{" is matched by what follows it only
        i = m.start()
        if text[i] == "{":
            stack.append(i)
        elif stack:
            j = stack.pop()
            if j in box_opens and (best is None or j > best[0]):
                best = (j, i)
    return text[best[0] + 1 : best[1]].strip() if best is not None else None


def int_equal(a: str, b: str) -> bool:
    """Two integer strings (``-?\\d+``) have the same value, compared as text.

    ``int()`` refuses more than 4,300 digits (``sys.get_int_max_str_digits``) and is quadratic in
    the length; here leading zeros and the sign of zero are normalised and the digits compared.
    """
    def norm(x: str) -> tuple[bool, str]:
        neg, digits = x.startswith("-"), x.lstrip("-").lstrip("0") or "0"
        return (neg and digits != "0", digits)

    return norm(a) == norm(b)


def _pred_configs(fmt: str) -> list[Any]:
    if fmt == "choice":
        return [StringExtractionConfig(strings=_CHOICES, lowercase=True)]
    return [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@lru_cache(maxsize=65536)
def _parse_gold(gold: str, fmt: str) -> tuple[Any, ...]:
    """Parse a gold answer once per worker (cached): ``expr`` -> plain, ``latex`` -> ``$gold$``."""
    if fmt == "expr":
        configs: list[Any] = [ExprExtractionConfig(), LatexExtractionConfig()]
        text = gold
    elif fmt == "latex":
        configs, text = [LatexExtractionConfig()], f"${gold}$"
    elif fmt == "latex_dollar":
        # OlympiadBench golds carry their own (sometimes broken) $...$: "$221,$8$", "$x$." ->
        # drop every $ and a trailing period, then wrap once.
        configs = [LatexExtractionConfig()]
        text = "$" + gold.replace("$", "").strip().rstrip(".").strip() + "$"
    else:  # choice
        configs, text = [StringExtractionConfig(strings=_CHOICES, lowercase=True)], gold
    return tuple(parse(text, configs, parsing_timeout=None))


def normalize_gold(gold: Any) -> str:
    """Gold answers arrive as str or number; numbers become their plain decimal string.

    Thousands separators in plain integers (``1,000``) are removed, since math-verify would
    read them as a tuple.
    """
    if isinstance(gold, bool) or gold is None:
        raise ValueError(f"gold={gold!r} is invalid: allowed a string or a number")
    if isinstance(gold, float) and gold.is_integer():
        gold = int(gold)
    text = str(gold).strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+", text):
        text = text.replace(",", "")
    return text


def grade_answer(completion: str, gold: Any, benchmark_or_gold_format: str, *,
                 require_think_end: bool = False) -> GradeResult:
    """Grade ``completion`` against ``gold``; see the module docstring for the rules.

    No timeout is applied here: call it through :class:`eval.grader.Grader` for untrusted text.
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    if require_think_end and (missing := missing_think_end(completion)) is not None:
        return missing
    fmt = gold_format_for(benchmark_or_gold_format)
    gold_text = normalize_gold(gold)
    region = _BOLD.sub(r"\1", answer_region(completion))
    boxed = last_boxed(region)
    if boxed is not None and fmt != "choice" and _INT.fullmatch(boxed) and _INT.fullmatch(gold_text):
        # fast path, same verdict as math-verify: two integers are equal iff their values are
        return GradeResult(int_equal(boxed, gold_text), _clip(boxed), "ok")
    gold_parsed = _parse_gold(gold_text, fmt)
    if not gold_parsed:
        return GradeResult(False, None, "parse_error", f"gold answer {gold_text!r} could not be parsed as {fmt}")
    if boxed is not None:
        if not boxed:
            return GradeResult(False, "", "no_answer", "empty \\boxed{}")
        if len(boxed) > MAX_BOXED_CHARS:
            return GradeResult(False, _clip(boxed), "parse_error",
                               f"boxed answer has {len(boxed)} characters (limit {MAX_BOXED_CHARS}); not parsed")
        pred_text = boxed if fmt == "choice" else f"${boxed}$"
        pred = parse(pred_text, _pred_configs(fmt), parsing_timeout=None)
        if not pred:
            return GradeResult(False, boxed, "parse_error", "boxed answer could not be parsed")
        extracted: str | None = boxed
    else:
        pred = parse(region[-FALLBACK_TAIL_CHARS:], _pred_configs(fmt), parsing_timeout=None)
        if not pred:
            return GradeResult(False, None, "no_answer")
        extracted = _clip(str(pred[-1]))
    try:
        ok = verify(list(gold_parsed), pred, timeout_seconds=None, raise_on_error=True)
    except Exception as exc:  # math-verify/sympy internals: counted as parse_error, not hidden
        return GradeResult(False, extracted, "parse_error", f"verify failed: {type(exc).__name__}: {exc}"[:300])
    return GradeResult(bool(ok), extracted, "ok")


def _clip(text: str, limit: int = MAX_BOXED_CHARS) -> str:
    """``text`` as stored in a sample record: at most ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more characters]"


def warm_up() -> None:
    """Grade a few typical answers once per process.

    The LaTeX parser (ANTLR) builds its prediction cache lazily; the first few hundred parses
    are ~3x slower. Workers call this before taking tasks (the forkserver does it once).
    """
    global _warmed
    if _warmed:
        return
    for text, fmt in _WARM_UP_ANSWERS:
        grade_answer(f"</think> \\boxed{{{text.strip('$')}}}", text, fmt)
    _warmed = True
