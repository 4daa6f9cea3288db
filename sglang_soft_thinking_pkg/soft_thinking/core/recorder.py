"""The trace recorder: step results of a batch in, one :class:`SoftTrace` per row out.

Any engine's decode loop does, per step, ``recorder.record(alive, t, result, phase)`` with the
original row index of each row still in the batch, and at the end ``recorder.finish()``. The
recorder keeps ``[rows, steps]`` buffers on the device (no host transfer while decoding) and
the per-row bookkeeping the trace needs:

- ``length[r]``: steps taken by row ``r`` (its last recorded step + 1);
- ``answer_start[r]``: the first step after thinking ended (the step after the think-end step;
  the length if thinking never ended; 0 for a discrete rollout);
- ``cold_stopped[r]``: whether Cold Stop forced the row's think-end.

Each row's trace is cut to its own ``K`` (the batch may be wider) and carries its own noise
kind, tau_g and temperatures (:class:`TraceMeta`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.noise import mixture_weights
from soft_thinking.core.phase import PhaseTracker
from soft_thinking.core.plan import answer_temperature
from soft_thinking.core.step import StepResult
from soft_thinking.core.trace import SoftTrace


@dataclass(frozen=True)
class TraceMeta:
    """The per-sequence scalars of a row's trace (spec §2), from the row's config."""

    noise: str
    tau_g: float
    temperature: float
    answer_temperature: float
    max_topk: int
    soft_thinking: bool

    @classmethod
    def from_config(cls, cfg: SoftThinkingConfig) -> TraceMeta:
        return cls(cfg.effective_noise, cfg.gumbel_softmax_temperature, cfg.temperature, answer_temperature(cfg),
                   cfg.max_topk, cfg.enable_soft_thinking)


@dataclass
class RecordedRow:
    """One row's trace and how its thinking ended."""

    trace: SoftTrace
    thinking_end: int  # the first step after the think-end step; -1 if thinking never ended
    cold_stopped: bool


class TraceRecorder:
    """Device buffers ``[rows, steps(, k)]`` filled one step at a time (module doc)."""

    def __init__(self, metas: Sequence[TraceMeta], steps: int, k: int, device: torch.device | str) -> None:
        b = len(metas)
        self.metas = list(metas)
        self.tokens = torch.zeros(b, steps, dtype=torch.int64, device=device)
        self.ids = torch.zeros(b, steps, k, dtype=torch.int64, device=device)
        self.q = torch.zeros(b, steps, k, dtype=torch.float32, device=device)
        self.soft = torch.zeros(b, steps, dtype=torch.bool, device=device)
        self.logprobs = torch.zeros(b, steps, dtype=torch.float32, device=device)
        self.n_kept = torch.ones(b, steps, dtype=torch.int64, device=device)
        self.length = torch.zeros(b, dtype=torch.int64, device=device)
        self.answer_start = torch.full((b,), -1, dtype=torch.int64, device=device)
        self.cold_stopped = torch.zeros(b, dtype=torch.bool, device=device)

    def record(self, rows: Tensor, t: int, res: StepResult, phase: PhaseTracker) -> None:
        """Store step ``t`` of the batch rows ``rows`` (their original indices), after ``decode_step``."""
        self.tokens[rows, t] = res.tokens
        self.ids[rows, t, : res.ids.shape[1]] = res.ids
        self.q[rows, t, : res.q.shape[1]] = res.q.to(torch.float32)
        self.soft[rows, t] = res.soft
        self.logprobs[rows, t] = res.logprobs.to(torch.float32)  # float64 models score in float64
        self.n_kept[rows, t] = res.n_kept
        self.length[rows] = t + 1
        started = self.answer_start[rows]
        self.answer_start[rows] = torch.where((started < 0) & ~phase.thinking, t + 1, started)
        self.cold_stopped[rows] |= phase.cold_stopped

    def finish(self) -> list[RecordedRow]:
        """Per row its :class:`SoftTrace` (on the CPU, cut to its length and its own K) and phase end."""
        host = {name: getattr(self, name).cpu() for name in
                ("tokens", "ids", "q", "soft", "logprobs", "n_kept", "length", "answer_start", "cold_stopped")}
        out = []
        for r, meta in enumerate(self.metas):
            n, k = int(host["length"][r]), meta.max_topk
            start = int(host["answer_start"][r])
            trace = SoftTrace(
                tokens=host["tokens"][r, :n].clone(),
                ids=host["ids"][r, :n, :k].to(torch.int32),
                q=host["q"][r, :n, :k].clone(),
                soft=host["soft"][r, :n].clone(),
                logprobs=host["logprobs"][r, :n].clone(),
                noise=meta.noise,
                tau_g=meta.tau_g,
                temperature=meta.temperature,
                answer_temperature=meta.answer_temperature,
                answer_start=(start if start >= 0 else n) if meta.soft_thinking else 0,
                n_kept=host["n_kept"][r, :n].to(torch.int16),
            )
            ended = start if meta.soft_thinking else -1
            out.append(RecordedRow(trace, ended, bool(host["cold_stopped"][r])))
        return out


def trace_stats(trace: SoftTrace) -> dict[str, float]:
    """Per-sample soft-step statistics: their count, the share with one surviving candidate
    (a degenerate mixture) and the share whose largest weight is below 0.9."""
    n_soft = int(trace.soft.sum())
    if not n_soft:
        return {"soft_steps": 0.0, "single_candidate_share": 0.0, "top_weight_below_0.9_share": 0.0}
    top_w = mixture_weights(trace.q[trace.soft], trace.noise, trace.tau_g).max(-1).values
    return {
        "soft_steps": float(n_soft),
        "single_candidate_share": float((trace.n_kept[trace.soft] == 1).float().mean()),
        "top_weight_below_0.9_share": float((top_w < 0.9).float().mean()),
    }
