"""What every rollout engine shares: the :class:`Sample` it returns and the :class:`RolloutEngine`
protocol it implements (the reference HF engine, the SGLang plug-in, ...).

An engine turns prompts and a :class:`SoftThinkingConfig` (or one per prompt) into samples;
sample ``j`` of prompt ``i`` draws its randomness from :func:`sample_seed` ``(seed, i, j)``, so a
sample does not depend on the batch it ran in, nor on the engine. :func:`make_sample` turns a
row the core's :class:`~soft_thinking.core.recorder.TraceRecorder` recorded into a
:class:`Sample` (text, thinking / answer split, statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.recorder import RecordedRow, trace_stats
from soft_thinking.core.trace import SoftTrace
from soft_thinking.errors import SoftGRPOError
from soft_thinking.text import THINK_END, derive_seed

FINISH_REASONS = ("eos", "stop", "length", "context")


class EngineError(SoftGRPOError, ValueError):
    """Bad input to an engine; the message names the problem."""


@dataclass
class Sample:
    """One generated sample and everything the evaluation and the trainer read from it."""

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    thinking_text: str
    answer_text: str
    finish_reason: str  # one of FINISH_REASONS
    trace: SoftTrace
    num_thinking_tokens: int
    cold_stopped: bool
    time_s: float
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def soft_share(self) -> float:
        return self.trace.soft_share

    @property
    def logprobs(self) -> Tensor:
        return self.trace.logprobs


Prompts = Sequence[str] | Sequence[Sequence[int]]
Configs = SoftThinkingConfig | Sequence[SoftThinkingConfig]


class RolloutEngine(Protocol):
    """The interface every engine implements."""

    tokenizer: Any

    def generate(
        self,
        prompts: Prompts,
        config: Configs,
        n: int = 1,
        max_new_tokens: int = 256,
        seed: int = 0,
        *,
        stop: Sequence[str] = (),
        seeds: Sequence[int] | None = None,
    ) -> list[Sample]:
        """``n`` samples per prompt, prompt-major (``samples[i * n + j]``).

        ``prompts``: chat-templated strings or token-id lists. ``config``: one config for every
        prompt or one per prompt. Sample ``j`` of prompt ``i`` is seeded with
        ``sample_seed(seed, i, j)``, or ``sample_seed(seeds[i], 0, j)`` when per-prompt ``seeds``
        are given (the sample of a call for that prompt alone with ``seed=seeds[i]``).
        """
        ...


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The random seed of one sample: :func:`derive_seed` of ``("softgrpo", seed, prompt, sample)``."""
    return derive_seed("softgrpo", seed, prompt_index, sample_index)


def per_prompt_configs(config: Configs, n_prompts: int) -> list[SoftThinkingConfig]:
    """``config`` repeated for every prompt, or the per-prompt list checked for its length."""
    if isinstance(config, SoftThinkingConfig):
        return [config] * n_prompts
    configs = list(config)
    if len(configs) != n_prompts or not all(isinstance(c, SoftThinkingConfig) for c in configs):
        raise EngineError(f"config: one SoftThinkingConfig, or one per prompt ({n_prompts}); got {len(configs)} items")
    return configs


def resolve_think_end(tokenizer: Any, text: str = THINK_END) -> tuple[int, ...]:
    """The token-id sequence of the think-end string (one id for models with a ``</think>`` token)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise EngineError(f"think-end string {text!r} encodes to no tokens")
    return tuple(int(i) for i in ids)


def _end_of_subsequence(tokens: list[int], pattern: list[int]) -> int:
    """Index just past the first occurrence of ``pattern`` in ``tokens`` (-1 if absent)."""
    m = len(pattern)
    for i in range(len(tokens) - m + 1):
        if tokens[i : i + m] == pattern:
            return i + m
    return -1


def make_sample(
    row: RecordedRow,
    cfg: SoftThinkingConfig,
    prompt_index: int,
    sample_index: int,
    prompt_ids: Sequence[int],
    finish_reason: str,
    time_s: float,
    decode: Callable[[list[int]], str],
) -> Sample:
    """The :class:`Sample` of a recorded row; ``decode`` turns token ids into text (special tokens kept).

    The text drops a final EOS token. Soft rollouts split thinking / answer where their phase
    ended; discrete ones at the first think-end sequence in the text (all answer without one).
    """
    token_ids = row.trace.tokens.tolist()
    body = token_ids[:-1] if finish_reason == "eos" else token_ids
    end_seq = list(cfg.think_end_token_ids)
    soft_on = cfg.enable_soft_thinking
    if soft_on:
        split = row.thinking_end  # first answer step, -1 if thinking never ended
    else:
        split = _end_of_subsequence(body, end_seq) if end_seq else -1
    if split >= 0:
        thinking_text = decode(body[: max(split - len(end_seq), 0)])
        answer_text = decode(body[split:])
    elif soft_on:  # still thinking when it stopped
        thinking_text, answer_text = decode(body), ""
    else:  # discrete decoding of a text without a think-end: all of it is the answer
        thinking_text, answer_text = "", decode(body)
    num_thinking = (split if split >= 0 else len(token_ids)) if (soft_on or split >= 0) else 0
    return Sample(
        prompt_index=prompt_index,
        sample_index=sample_index,
        prompt_ids=list(prompt_ids),
        token_ids=token_ids,
        text=decode(body),
        thinking_text=thinking_text,
        answer_text=answer_text,
        finish_reason=finish_reason,
        trace=row.trace,
        num_thinking_tokens=num_thinking,
        cold_stopped=row.cold_stopped,
        time_s=time_s,
        stats=trace_stats(row.trace),
    )
