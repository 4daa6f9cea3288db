"""One step's rollout, collated once.

The engine returns one :class:`~soft_thinking.core.trace.SoftTrace` per sample. The trainer
validates and pads them **once** into a :class:`~soft_thinking.core.trace.TraceBatch` (length =
the longest response of the step), moves it to the device, and every later pass (old log-probs,
reference log-probs, each PPO epoch) takes row slices of that one batch: the same rows with the
same padding, so on the first mini-batch ``log pi - log pi_old`` is exactly 0.

A step sampled at temperature 0 (greedy) has no finite log-probability to replay; such a trace is
refused here by name instead of turning into NaN weights (the config check in
:meth:`SoftThinkingConfig.validate` with ``for_training=True`` refuses it earlier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from soft_thinking.core.config import ConfigError
from soft_thinking.core.trace import SoftTrace, TraceBatch, collate_traces
from softgrpo.reference.data import Example


def slice_trace_batch(batch: TraceBatch, rows: slice) -> TraceBatch:
    """Rows ``rows`` of a collated batch (views, no copy); the padding length is kept."""
    values: dict[str, Any] = {}
    for f in fields(TraceBatch):
        v = getattr(batch, f.name)
        values[f.name] = v[rows] if isinstance(v, Tensor) else v
    return TraceBatch(**values)


def check_replayable(traces: Sequence[SoftTrace]) -> None:
    """Every step of every trace must have a temperature > 0 (replay divides the logits by it)."""
    for i, tr in enumerate(traces):
        n = len(tr)
        if tr.answer_start > 0 and tr.temperature <= 0:
            raise ConfigError(f"rollout sample {i}: thinking steps were sampled at temperature {tr.temperature} "
                              "(greedy); training needs actor_rollout_ref.rollout.temperature > 0")
        if tr.answer_start < n and tr.answer_temperature <= 0:
            raise ConfigError(f"rollout sample {i}: answer steps were sampled at temperature {tr.answer_temperature} "
                              "(greedy) and have no finite log-probability; set "
                              "soft_thinking.after_thinking_temperature > 0 (or null) for training")


@dataclass
class Rollout:
    """One step's rollout, prompt-major (``n`` samples of prompt 0, then prompt 1, ...).

    ``batch`` is the collated trace batch on the trainer's device; ``prompts`` the prompt ids of
    each row. :meth:`rows` gives the ``(prompts, batch)`` of a micro-batch.
    """

    examples: list[Example]
    samples: list[Any]  # soft_thinking Sample objects (text, trace, stats)
    rewards: Tensor  # [B]
    advantages: Tensor  # [B]
    prompts: list[list[int]]
    batch: TraceBatch

    @classmethod
    def collate(cls, examples: list[Example], samples: list[Any], rewards: Tensor, advantages: Tensor,
                device: torch.device) -> Rollout:
        traces = [s.trace for s in samples]
        check_replayable(traces)
        batch = collate_traces(traces).to(device)
        return cls(examples, samples, rewards, advantages, [list(s.prompt_ids) for s in samples], batch)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def pad_to(self) -> int:
        return int(self.batch.tokens.shape[1])

    def rows(self, s: slice) -> tuple[list[list[int]], TraceBatch]:
        return self.prompts[s], slice_trace_batch(self.batch, s)


def rollout_metrics(ro: Rollout, n: int, counts: dict[str, int]) -> dict[str, float]:
    """Reward, length, soft-step and grading metrics of one rollout (``n`` samples per prompt)."""
    s = ro.samples
    lengths = torch.tensor([x.num_tokens for x in s], dtype=torch.float32)
    n_soft = sum(x.stats.get("soft_steps", 0.0) for x in s)

    def per_soft_step(key: str) -> float:  # a per-sample share, averaged over all soft steps
        return sum(x.stats.get(key, 0.0) * x.stats.get("soft_steps", 0.0) for x in s) / n_soft if n_soft else 0.0

    m = {
        "reward/mean": float(ro.rewards.mean()),
        "train/accuracy": float((ro.rewards > 0.5).float().mean()),
        "response/length_mean": float(lengths.mean()),
        "response/length_max": float(lengths.max()),
        "response/thinking_length_mean": sum(x.num_thinking_tokens for x in s) / len(s),
        "response/clip_share": sum(x.finish_reason in ("length", "context") for x in s) / len(s),
        "soft/step_share": sum(x.soft_share * x.num_tokens for x in s) / max(float(lengths.sum()), 1.0),
        "soft/single_candidate_share": per_soft_step("single_candidate_share"),
        "soft/top_weight_below_0.9_share": per_soft_step("top_weight_below_0.9_share"),
        "adv/zero_group_share": float((ro.rewards.view(-1, n).std(-1, unbiased=False) == 0).float().mean()),
    }
    for status in ("timeout", "parse_error", "error", "no_answer", "no_think_end"):
        m[f"reward/{status}_count"] = float(counts.get(status, 0))
    return m
