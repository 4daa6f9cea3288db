"""One decoding step for a batch: soft (thinking) and discrete (answer) rows together.

:func:`soft_step` (spec §1 steps 1-7), for a row in the thinking phase::

    p   = softmax(z / T)                       (T = 1 for greedy rows)
    c, p~ = the K best filtered candidates      (sampling.filtered_candidates)
    q   = noise.draw(p~)                        (noise.py; "none" for greedy rows)
    w   = noise.weights(q)                      (softmax(q / tau_g) for gumbel)
    token = c[argmax q],  H = -sum p log p,  log pi = density of q (logprob.py)

Candidates are stored sorted by ``q`` (= by weight), descending, so ``ids[:, 0]`` is the
visible token.

:func:`discrete_step`: inverse-CDF sampling (or argmax for T = 0) from the filtered
distribution; ``ids = [token, 0, ...]``, ``q = 0``, ``w = [1, 0, ...]``, ``log pi = log p[token]``.

:func:`decode_step` puts them together with a :class:`PhaseTracker` and a :class:`StepPlan`
(each row's settings): thinking rows take soft steps, answer rows discrete steps with the
``after_thinking_*`` settings, forced rows (Cold
Stop) emit the think-end pieces, and the step that completes the think-end is made discrete.
The next input of every row is ``mix_embeddings(E, ids, weights)`` (exactly ``E[token]`` for a
discrete row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from soft_thinking.core.logprob import LogProbOptions, step_logprobs
from soft_thinking.core.noise import (
    NoiseParams,
    UniformSource,
    as_source,
    draw_noise,
    get_noise,
    sample_uniforms,
)
from soft_thinking.core.phase import PhaseTracker
from soft_thinking.core.plan import StepPlan
from soft_thinking.core.sampling import (
    SamplingTensors,
    entropy_from_log_probs,
    filtered_candidates,
    filtered_sorted,
    sample_from_sorted,
    scaled_log_probs,
)


@dataclass
class StepResult:
    """What one step produced for each row of the batch."""

    tokens: Tensor  # int64 [B] visible token
    ids: Tensor  # int64 [B, K] candidates (sorted by weight, desc); discrete: [token, 0, ...]
    q: Tensor  # float32 [B, K] stored noise value (see noise.py); discrete: 0
    weights: Tensor  # float32 [B, K] mixture weights; discrete: one-hot at position 0
    soft: Tensor  # bool [B]
    logprobs: Tensor  # float32 [B] rollout log-prob of the step (logprob.py)
    token_logprobs: Tensor  # float32 [B] log softmax(z / T)[token]
    entropy: Tensor  # float32 [B] entropy of the unfiltered distribution
    n_kept: Tensor  # int64 [B] candidates that survived filtering (1 for discrete steps)

    @classmethod
    def empty(cls, batch: int, k: int, device: torch.device, dtype: torch.dtype = torch.float32) -> StepResult:
        """Zeros; ``dtype`` is the log-prob dtype (float32, or float64 for a float64 model)."""
        f32 = dict(dtype=torch.float32, device=device)
        fx = dict(dtype=dtype, device=device)
        return cls(
            tokens=torch.zeros(batch, dtype=torch.int64, device=device),
            ids=torch.zeros(batch, k, dtype=torch.int64, device=device),
            q=torch.zeros(batch, k, **f32),
            weights=torch.zeros(batch, k, **f32),
            soft=torch.zeros(batch, dtype=torch.bool, device=device),
            logprobs=torch.zeros(batch, **fx),
            token_logprobs=torch.zeros(batch, **fx),
            entropy=torch.zeros(batch, **fx),
            n_kept=torch.ones(batch, dtype=torch.int64, device=device),
        )

    def scatter_(self, rows: Tensor, other: StepResult) -> None:
        """Write ``other`` (a result for ``rows``, possibly fewer candidates wide) into this one."""
        for f in fields(self):
            src = getattr(other, f.name)
            if src.dim() == 2:  # ids / q / weights [n, K']: the first K' columns
                getattr(self, f.name)[rows, : src.shape[1]] = src
            else:
                getattr(self, f.name)[rows] = src

    def widen_(self, k: int) -> StepResult:
        """Pad ids / q / weights with zero columns to ``k`` candidates (no-op when already ``k`` wide)."""
        pad = k - self.ids.shape[1]
        if pad > 0:
            self.ids, self.q, self.weights = (torch.nn.functional.pad(x, (0, pad)) for x in (self.ids, self.q, self.weights))
        return self

    def make_discrete_(self, rows: Tensor) -> None:
        """Turn the steps of ``rows`` (bool [B]) into discrete steps of their visible token."""
        if not bool(rows.any()):
            return
        r = rows.unsqueeze(-1)
        onehot_ids = torch.zeros_like(self.ids)
        onehot_ids[:, 0] = self.tokens
        first = torch.zeros_like(self.weights)
        first[:, 0] = 1.0
        self.ids = torch.where(r, onehot_ids, self.ids)
        self.q = torch.where(r, torch.zeros_like(self.q), self.q)
        self.weights = torch.where(r, first, self.weights)
        self.soft = self.soft & ~rows
        self.logprobs = torch.where(rows, self.token_logprobs, self.logprobs)
        self.n_kept = torch.where(rows, torch.ones_like(self.n_kept), self.n_kept)


def _discrete_result(logp: Tensor, tokens: Tensor, max_topk: int, entropy: Tensor) -> StepResult:
    b = tokens.shape[0]
    res = StepResult.empty(b, max_topk, logp.device, logp.dtype)
    res.tokens = tokens
    res.ids[:, 0] = tokens
    res.weights[:, 0] = 1.0
    res.token_logprobs = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    res.logprobs = res.token_logprobs.clone()
    res.entropy = entropy
    return res


def soft_step(
    logits: Tensor,
    settings: SamplingTensors,
    generators: Sequence[torch.Generator] | UniformSource,
    noise: str,
    params: NoiseParams,
    max_topk: int,
    opts: LogProbOptions,
    logp: Tensor | None = None,
    entropy: Tensor | None = None,
) -> StepResult:
    """A thinking-phase step for every row of ``logits [B, V]`` (module doc).

    ``logp``/``entropy`` may be passed when the caller already computed them for these rows.
    """
    if logp is None:
        logp = scaled_log_probs(logits, settings.temperature)
    probs = logp.exp()
    if entropy is None:
        entropy = -(probs * logp).sum(-1)
    ids, p_tilde, n_kept = filtered_candidates(probs, max_topk, settings)
    greedy = settings.greedy
    # greedy rows of a noisy batch take the noise-free mixture w = p~ (and score 0, like "none")
    mixed_greedy = greedy.unsqueeze(-1) if noise != "none" and bool(greedy.any()) else None
    q = draw_noise(noise, p_tilde, as_source(generators), params)
    if mixed_greedy is not None:
        q = torch.where(mixed_greedy, p_tilde.to(q.dtype), q)
    order = q.argsort(dim=-1, descending=True, stable=True)
    ids, q = ids.gather(-1, order), q.gather(-1, order)
    weights = get_noise(noise).weights(q, params.tau_g)
    tokens = ids[:, 0]
    token_lp = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    soft = torch.ones_like(tokens, dtype=torch.bool)
    logprobs = step_logprobs(logp, tokens, ids, q, soft, noise, opts, n_kept)
    if mixed_greedy is not None:
        weights = torch.where(mixed_greedy, get_noise("none").weights(q, params.tau_g), weights)
        logprobs = torch.where(greedy, torch.zeros_like(logprobs), logprobs)
    return StepResult(tokens, ids, q, weights, soft, logprobs, token_lp, entropy, n_kept)


def discrete_step(
    logits: Tensor,
    settings: SamplingTensors,
    generators: Sequence[torch.Generator] | UniformSource,
    max_topk: int = 1,
    logp: Tensor | None = None,
    entropy: Tensor | None = None,
) -> StepResult:
    """Sample each row's token from its filtered distribution (argmax for ``T = 0``)."""
    if logp is None:
        logp = scaled_log_probs(logits, settings.temperature)
    if entropy is None:
        entropy = entropy_from_log_probs(logp)
    u = sample_uniforms(as_source(generators))
    sorted_ids, sorted_p = filtered_sorted(logp.exp(), settings)
    sampled = sample_from_sorted(sorted_ids, sorted_p, u)
    tokens = torch.where(settings.greedy, logp.argmax(-1), sampled)
    return _discrete_result(logp, tokens, max_topk, entropy)


def forced_step(logp: Tensor, tokens: Tensor, max_topk: int, entropy: Tensor | None = None) -> StepResult:
    """A discrete step whose token is imposed (Cold Stop's think-end pieces)."""
    return _discrete_result(logp, tokens, max_topk, entropy_from_log_probs(logp) if entropy is None else entropy)


def decode_step(
    logits: Tensor,
    phase: PhaseTracker,
    plan: StepPlan,
    randomness: Sequence[torch.Generator] | UniformSource,
) -> StepResult:
    """One step for a batch in mixed phases and with per-row settings; updates ``phase`` in place.

    Thinking rows: :func:`soft_step` with the row's thinking filters, noise kind, K, tau_g and
    noise factor (rows sharing a noise kind and K are stepped together). Answer rows:
    :func:`discrete_step` with the answer settings, or, with ``compat_stale_phase_mask`` (the
    original's bug), a Gumbel-argmax choice over the thinking filters fed back as a discrete
    token. Forced rows (Cold Stop) emit their think-end piece. The step whose token completes
    the think-end sequence is made discrete. The result is ``plan.k`` wide; the columns past a
    row's own K are zero (weight 0: they add nothing to the mixture).
    """
    b, device = logits.shape[0], logits.device
    source = as_source(randomness)
    opts = plan.logprob
    thinking = phase.thinking.clone()
    stale = ~thinking & plan.compat_stale_phase_mask
    use_think = thinking | stale
    temperature = torch.where(use_think, plan.think.temperature, plan.answer.temperature)
    logp = scaled_log_probs(logits, temperature)
    entropy = entropy_from_log_probs(logp)
    forced = phase.forced_tokens(entropy)
    is_forced = forced >= 0

    n_think, n_forced = int(use_think.sum()), int(is_forced.sum())
    if n_forced == 0 and n_think == 0:  # all answering: no gather/scatter
        result = discrete_step(logits, plan.answer, source, plan.k, logp, entropy)
    elif n_forced == 0 and n_think == b and len(plan.row_groups) == 1:  # all thinking alike
        (kind, k), _ = plan.row_groups[0]
        result = soft_step(logits, plan.think, source, kind, plan.params, k, opts, logp, entropy).widen_(plan.k)
    else:
        result = StepResult.empty(b, plan.k, device, logp.dtype)
        soft_rows = use_think & ~is_forced
        for (kind, k), members in plan.row_groups:
            rows = (soft_rows & members).nonzero().squeeze(-1)
            if rows.numel():
                part = soft_step(logits[rows], plan.think[rows], source.rows(rows), kind, plan.params.rows(rows), k,
                                 opts, logp[rows], entropy[rows])
                result.scatter_(rows, part)
        answer_rows = (~use_think & ~is_forced).nonzero().squeeze(-1)
        if answer_rows.numel():
            part = discrete_step(logits[answer_rows], plan.answer[answer_rows], source.rows(answer_rows), plan.k,
                                 logp[answer_rows], entropy[answer_rows])
            result.scatter_(answer_rows, part)
        forced_rows = is_forced.nonzero().squeeze(-1)
        if forced_rows.numel():
            result.scatter_(forced_rows, forced_step(logp[forced_rows], forced[forced_rows], plan.k, entropy[forced_rows]))

    ended = phase.update(result.tokens)
    result.make_discrete_(ended | stale)
    return result
