"""The step plan: what the configs of a batch's rows mean for every decoding step.

A batch may mix requests with different settings. :class:`StepPlan` holds them as per-row
tensors, so one step serves every row and rows can join (:meth:`StepPlan.cat`) and leave
(:meth:`StepPlan.rows`) the batch between steps:

==========================  ===============  =================================================
field                       per row          meaning (from the row's :class:`SoftThinkingConfig`)
==========================  ===============  =================================================
``think``                   ``[B]`` x 4      temperature / top_k / top_p / min_p while thinking
``answer``                  ``[B]`` x 4      the answer phase's (``after_thinking_*``; the
                                             thinking ones when soft thinking is off or
                                             ``compat_stale_phase_mask``)
``noise``                   int64 ``[B]``    index into ``NOISE_KINDS`` of the noise a soft step
                                             draws (``none`` for greedy rows, T = 0)
``max_topk``                int64 ``[B]``    the row's K; columns ``>= K`` of a ``[B, k]`` step
                                             are padding
``params``                  ``[B]`` x 2      ``tau_g`` and ``noise_factor`` (float64: the
                                             config's values exactly; :class:`NoiseParams`)
``compat_stale_phase_mask`` bool ``[B]``     the original's stale phase mask for this row
==========================  ===============  =================================================

``k`` is the batch's candidate width (the largest K), :meth:`StepPlan.candidate_mask` the
``[B, k]`` keep-mask of each row's own candidates. The phase settings (soft thinking on/off,
think-end ids, Cold Stop) are per row too, in the :class:`PhaseTracker` of :func:`new_phase`.
Only the constants of the noise kinds and of the estimator (:data:`BATCH_FIELDS`) must agree
across rows; :meth:`StepPlan.build` names the first field that does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import torch
from torch import Tensor

from soft_thinking.core.config import NOISE_KINDS, ConfigError, SoftThinkingConfig
from soft_thinking.core.logprob import LogProbOptions
from soft_thinking.core.noise import NoiseParams
from soft_thinking.core.phase import PhaseTracker
from soft_thinking.core.sampling import SamplingTensors

#: Fields every row of one batch must share (constants of the noise kinds and of the estimator).
BATCH_FIELDS = (
    "gumbel_clamp", "dirichlet_alpha", "gaussian_sigma", "gaussian_clip", "logprob_mode", "logp_floor",
    "degenerate_as_discrete",
)


def real_phases(cfg: SoftThinkingConfig) -> bool:
    """Whether the steps after thinking use the ``after_thinking_*`` settings."""
    return cfg.enable_soft_thinking and not cfg.compat_stale_phase_mask


def answer_temperature(cfg: SoftThinkingConfig) -> float:
    """The temperature of the steps after thinking."""
    return cfg.answer_temperature if real_phases(cfg) else cfg.temperature


def new_phase(configs: Sequence[SoftThinkingConfig], device: torch.device | str = "cpu") -> PhaseTracker:
    """Fresh phase state for rows sampling with ``configs`` (thinking where soft thinking is on)."""
    return PhaseTracker(
        len(configs), [c.think_end_token_ids if c.enable_soft_thinking else () for c in configs],
        soft_thinking=[c.enable_soft_thinking for c in configs],
        entropy_threshold=[c.early_stopping_entropy_threshold for c in configs],
        length_threshold=[c.early_stopping_length_threshold for c in configs], device=device,
    )


@dataclass
class StepPlan:
    """Per-row step inputs of a batch (module doc)."""

    think: SamplingTensors
    answer: SamplingTensors
    noise: Tensor  # int64 [B], index into NOISE_KINDS
    max_topk: Tensor  # int64 [B]
    params: NoiseParams  # tau_g, noise_factor: float64 [B]
    compat_stale_phase_mask: Tensor  # bool [B]
    shared: SoftThinkingConfig  # the batch-level fields (BATCH_FIELDS) of every row
    k: int  # candidate width of the batch's step results (>= every row's K)

    @classmethod
    def build(cls, configs: Sequence[SoftThinkingConfig], device: torch.device | str = "cpu") -> StepPlan:
        """The plan of a batch whose row ``b`` samples with ``configs[b]`` (validated elsewhere)."""
        if not configs:
            raise ConfigError("StepPlan.build: no rows")
        first = configs[0]
        for i, cfg in enumerate(configs):
            for name in BATCH_FIELDS:
                if getattr(cfg, name) != getattr(first, name):
                    raise ConfigError(
                        f"rows of one batch must share SoftThinkingConfig.{name}: row {i} has "
                        f"{getattr(cfg, name)!r}, row 0 {getattr(first, name)!r}"
                    )

        def vec(values: list, dtype: torch.dtype) -> Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        def filters(answer: bool) -> SamplingTensors:
            prefixes = ["answer_" if answer and real_phases(c) else "" for c in configs]
            cols = [[getattr(c, p + n) for c, p in zip(configs, prefixes)] for n in ("temperature", "top_k", "top_p", "min_p")]
            return SamplingTensors(vec(cols[0], torch.float32), vec(cols[1], torch.int64),
                                   vec(cols[2], torch.float32), vec(cols[3], torch.float32))

        return cls(
            think=filters(answer=False),
            answer=filters(answer=True),
            noise=vec([NOISE_KINDS.index(c.effective_noise) for c in configs], torch.int64),
            max_topk=vec([c.max_topk for c in configs], torch.int64),
            params=replace(
                first.noise_params(),
                tau_g=vec([c.gumbel_softmax_temperature for c in configs], torch.float64),
                noise_factor=vec([c.noise_factor for c in configs], torch.float64),
            ),
            compat_stale_phase_mask=vec([c.compat_stale_phase_mask for c in configs], torch.bool),
            shared=first,
            k=max(c.max_topk for c in configs),
        )

    # -- batch membership ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.noise.shape[0])

    def rows(self, index: Tensor) -> StepPlan:
        """The plan of rows ``index`` (rows leaving the batch); ``k`` is kept."""
        return replace(self, think=self.think[index], answer=self.answer[index], noise=self.noise[index],
                       max_topk=self.max_topk[index], params=self.params.rows(index),
                       compat_stale_phase_mask=self.compat_stale_phase_mask[index])

    @classmethod
    def cat(cls, plans: Sequence[StepPlan]) -> StepPlan:
        """One plan of several batches' rows, in order (requests joining a batch)."""
        first = plans[0]
        for p in plans[1:]:
            StepPlan.build([first.shared, p.shared])  # the batch-level fields must agree

        def cat_filters(parts: list[SamplingTensors]) -> SamplingTensors:
            return SamplingTensors(*(torch.cat([getattr(s, n) for s in parts])
                                     for n in ("temperature", "top_k", "top_p", "min_p")))

        return replace(
            first,
            think=cat_filters([p.think for p in plans]),
            answer=cat_filters([p.answer for p in plans]),
            noise=torch.cat([p.noise for p in plans]),
            max_topk=torch.cat([p.max_topk for p in plans]),
            params=replace(first.params, tau_g=torch.cat([p.params.tau_g for p in plans]),
                           noise_factor=torch.cat([p.params.noise_factor for p in plans])),
            compat_stale_phase_mask=torch.cat([p.compat_stale_phase_mask for p in plans]),
            k=max(p.k for p in plans),
        )

    # -- derived ------------------------------------------------------------------------------
    @cached_property
    def logprob(self) -> LogProbOptions:
        return self.shared.logprob_options()

    @cached_property
    def row_groups(self) -> list[tuple[tuple[str, int], Tensor]]:
        """``[((noise kind, K), member rows bool [B]), ...]``: the rows a soft step can take together.

        Computed on the host once per plan (the reference engine's grouping; a sync-free batched
        step reads the per-row tensors instead).
        """
        keys = list(zip(self.noise.tolist(), self.max_topk.tolist()))
        groups = []
        for code, k in dict.fromkeys(keys):
            members = (self.noise == code) & (self.max_topk == k)
            groups.append(((NOISE_KINDS[code], k), members))
        return groups

    def candidate_mask(self) -> Tensor:
        """bool ``[B, k]``: column ``j`` of row ``b`` is one of its own ``max_topk[b]`` candidates."""
        return torch.arange(self.k, device=self.max_topk.device) < self.max_topk.unsqueeze(-1)
