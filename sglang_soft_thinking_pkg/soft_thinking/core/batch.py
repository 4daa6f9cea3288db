"""A batched decode step without host synchronisation, for continuous batching (SGLang's sample hook).

:func:`batched_decode_step` computes what :func:`soft_thinking.core.step.decode_step` computes, row by
row, with every per-row choice made by ``torch.where`` instead of Python branches: no ``.item()``,
``.tolist()``, ``bool(tensor)``, ``nonzero()``, per-row loops or data-dependent shapes. It compiles
under ``torch.compile(fullgraph=True)`` and can run while the GPU is still busy with the forward.

Per-row settings (:class:`RowSettings`): thinking and answer filters, noise kind, ``tau_g``,
noise factor, ``K`` (padded to the static ``k_max`` with a keep-mask) and the compat flag. Static
settings (:class:`BatchSpec`): ``k_max``, the candidate width ``M``, the noise kinds that may
appear, the per-batch noise constants and the estimator options.

For every row (``T`` = thinking or answer temperature by phase; greedy rows use ``T = 1``)::

    logp = log softmax(z / T),  H = -sum p log p,  (vals, idx) = topk(p, M)     one V-sized pass each
    soft:    keep = prefix filters (thinking settings) on vals[:K] & rank < K_row,  p~ = renormalized
             q = draw_kind(p~, u_kind) (p~ for greedy rows), sorted by q, w = weights_kind(q)
             token = ids[0],  log pi = density_kind(logp[ids], q)
    answer:  inverse-CDF with u_sample over the M-prefix filtered with the answer settings
             (argmax for greedy rows)
    forced:  the Cold Stop piece
    then the think-end update; the step that ends thinking (and compat-stale rows) is made discrete.

Exactness: the step equals ``decode_step`` whenever every row's kept prefix fits in ``M``: always
for soft rows with ``top_k <= M`` (or top-k off) and for answer rows with ``top_k <= M``. Otherwise
the row is sampled from the truncated prefix and flagged in ``BatchStep.truncated`` (SGLang's
plug-in refuses such settings up front). Ties between equal probabilities may be ordered
differently by ``topk`` of another width.

Randomness is supplied (:class:`StepUniforms`): :func:`counter_step_uniforms` keys it by each
row's ``(seed, position)``; tests feed the uniforms of per-row generators to compare with
``decode_step``.

Cost: only the kinds in ``BatchSpec.kinds`` are drawn (each for every row), and every Philox block
the step needs comes from one stacked evaluation (:func:`uniform_layout`). :func:`sample_step`
(uniforms + step) is the whole per-step sampling as one function; measured on torch 2.13 (CPU, B=32):
a gumbel-only step is ~400 aten kernel ops eager (466 with views; 853 before, 556 of them Philox),
the default all-kinds spec ~550 (628 with views; 3,571 before),
and ``torch.compile(sample_step, fullgraph=True)`` turns it into ~25 fused kernels
(tests/core/test_sample_graph.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.logprob import LogProbOptions
from soft_thinking.core.noise import NOISE_KINDS, NoiseParams, get_noise, normalize_weights
from soft_thinking.core.phase import PhaseState
from soft_thinking.core.rng import (
    STREAM_SAMPLE,
    block_words,
    select_columns,
    stream_columns,
    uniform_from_word,
)
from soft_thinking.core.sampling import SamplingTensors, prefix_keep_mask, sample_from_sorted


@dataclass
class RowSettings:
    """Per-row settings of a batch (leading dim ``B``), fixed for a request's lifetime."""

    think: SamplingTensors
    answer: SamplingTensors
    noise: Tensor  # int64 [B]: code of the noise kind (index in NOISE_KINDS)
    tau_g: Tensor  # float32 [B]
    noise_factor: Tensor  # float32 [B]
    max_topk: Tensor  # int64 [B]: K of the row (<= BatchSpec.k_max)
    compat_stale_phase_mask: Tensor  # bool [B]

    @classmethod
    def from_plan(cls, plan) -> RowSettings:  # plan: core.plan.StepPlan (duck-typed)
        """The per-row tensors of a :class:`~soft_thinking.core.plan.StepPlan`."""
        b = plan.noise.shape[0]
        return cls(
            think=plan.think, answer=plan.answer, noise=plan.noise,
            tau_g=torch.as_tensor(plan.params.tau_g, device=plan.noise.device).expand(b),
            noise_factor=torch.as_tensor(plan.params.noise_factor, device=plan.noise.device).expand(b),
            max_topk=plan.max_topk,
            compat_stale_phase_mask=plan.compat_stale_phase_mask,
        )

    def select(self, rows: Tensor) -> RowSettings:
        return RowSettings(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @classmethod
    def cat(cls, parts: list[RowSettings]) -> RowSettings:
        def join(name: str) -> object:
            values = [getattr(p, name) for p in parts]
            if isinstance(values[0], SamplingTensors):
                return SamplingTensors(*(torch.cat([getattr(v, f.name) for v in values]) for f in fields(SamplingTensors)))
            return torch.cat(values)

        return cls(**{f.name: join(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class BatchSpec:
    """The static (compile-time) settings of a batched step."""

    k_max: int
    width: int  # M: candidates read per row (>= k_max and >= every active top_k)
    kinds: tuple[str, ...] = NOISE_KINDS  # noise kinds rows may use (each drawn for all rows): only these
    params: NoiseParams = field(default_factory=lambda: SoftThinkingConfig().noise_params())  # tau_g/noise_factor per row
    opts: LogProbOptions = field(default_factory=lambda: SoftThinkingConfig().logprob_options())

    @classmethod
    def from_plan(cls, plan, width: int | None = None) -> BatchSpec:  # plan: core.plan.StepPlan
        """The static part of a plan; ``width`` defaults to ``plan.k``."""
        per_batch = replace(plan.params, tau_g=1.0, noise_factor=1.0)  # the per-row values live in RowSettings
        return cls(k_max=plan.k, width=plan.k if width is None else width, params=per_batch, opts=plan.logprob)

    def __post_init__(self) -> None:
        if self.k_max < 1 or self.width < self.k_max:
            raise ValueError(f"BatchSpec needs 1 <= k_max <= width, got k_max={self.k_max}, width={self.width}")
        for kind in self.kinds:
            get_noise(kind)


@dataclass
class StepUniforms:
    """The random inputs of one step: ``noise[kind] [B, k_max, S_kind]`` and ``sample [B]``."""

    noise: dict[str, Tensor]
    sample: Tensor


@dataclass
class BatchStep:
    """What one batched step produced for each row (``K = k_max``; columns past a row's K are padding)."""

    tokens: Tensor  # int64 [B]
    ids: Tensor  # int64 [B, K]: sorted by weight; discrete [token, 0, ...]; padding 0
    q: Tensor  # float32 [B, K]: stored noise value; discrete and padding 0
    weights: Tensor  # float32 [B, K]: mixture weights; discrete one-hot; padding 0
    soft: Tensor  # bool [B]
    logprobs: Tensor  # [B] rollout log-prob of the step (float32, float64 for float64 logits)
    token_logprobs: Tensor  # [B] log softmax(z / T)[token]
    entropy: Tensor  # [B]
    n_kept: Tensor  # int64 [B]: candidates surviving the filters (1 for discrete steps)
    answer: Tensor  # bool [B]: the step came after thinking had ended (answer phase)
    truncated: Tensor  # bool [B]: the row's kept prefix did not fit in the width (see module doc)
    forced: Tensor  # bool [B]: the token was forced by Cold Stop (a think-end piece)


def uniform_layout(spec: BatchSpec) -> tuple[list[int], list[int], dict[str, list[int]], int]:
    """Where a step's uniforms come from: ``(blocks, columns, {kind: positions}, sample position)``.

    ``blocks``: the Philox blocks the configured kinds and the sample stream read (block 0 always:
    the Gumbel stream is its word 0 and the sample stream its word 1, so they share it);
    ``columns``: the :func:`~soft_thinking.core.rng.block_words` columns converted to uniforms;
    a kind's uniforms are ``columns`` positions ``{kind: [...]}``, the sample uniform is position
    ``sample`` of candidate 0.
    """
    streams = {kind: list(get_noise(kind).streams(spec.params)) for kind in spec.kinds}
    needed = sorted({s for ss in streams.values() for s in ss} | {STREAM_SAMPLE})
    blocks = sorted({s // 4 for s in needed})
    columns = stream_columns(needed, blocks)
    return blocks, columns, {k: [needed.index(s) for s in ss] for k, ss in streams.items()}, needed.index(STREAM_SAMPLE)


def counter_step_uniforms(seed: Tensor, position: Tensor, spec: BatchSpec) -> StepUniforms:
    """Counter-RNG uniforms of one step for rows keyed by ``seed [B]`` and ``position [B]`` (sequence length).

    Only the kinds in ``spec.kinds`` are drawn, all from one Philox evaluation (:func:`uniform_layout`);
    each value equals ``counter_uniforms(seed, position, k_max, kind.streams)`` bit for bit.
    """
    blocks, columns, kinds, sample = uniform_layout(spec)
    u = uniform_from_word(select_columns(block_words(seed, position, spec.k_max, blocks), columns))
    noise = {kind: select_columns(u, cols) if cols else u[..., :0] for kind, cols in kinds.items()}
    return StepUniforms(noise, u[:, 0, sample])


def _col(x: Tensor) -> Tensor:
    return x.unsqueeze(-1)


def _soft_candidates(
    logp: Tensor, vals: Tensor, idx: Tensor, full_mass: Tensor, rows: RowSettings, u: StepUniforms, spec: BatchSpec
) -> tuple[Tensor, ...]:
    """Soft step of every row: (tokens, ids, q, weights, logprobs, n_kept), sorted by q."""
    b, v = logp.shape
    rank = torch.arange(spec.k_max, device=logp.device).unsqueeze(0)
    valid = rank < _col(rows.max_topk)
    keep = prefix_keep_mask(vals, rows.think, v, full_mass=full_mass)[:, : spec.k_max] & valid
    kept = vals[:, : spec.k_max] * keep
    p_tilde = kept / kept.sum(-1, keepdim=True)
    n_kept = keep.sum(-1)
    params = replace(spec.params, tau_g=rows.tau_g, noise_factor=rows.noise_factor)
    q = p_tilde.to(torch.float32)  # kind "none" and greedy rows: q = p~
    for kind in spec.kinds:
        if get_noise(kind).stochastic:
            drawn = get_noise(kind).draw(p_tilde, u.noise[kind], params)
            q = torch.where(_col(rows.noise == get_noise(kind).code), drawn, q)
    greedy = rows.think.temperature == 0
    q = torch.where(_col(greedy), p_tilde.to(q.dtype), q)
    order = q.masked_fill(~valid, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    ids, q = idx[:, : spec.k_max].gather(-1, order), q.gather(-1, order)
    cand_lp = logp.gather(-1, ids)
    weights = normalize_weights(q, rows.tau_g, valid)
    logprobs = torch.zeros_like(logp[:, 0])
    for kind in spec.kinds:
        nk = get_noise(kind)
        is_kind = rows.noise == nk.code
        if nk.stochastic:
            weights = torch.where(_col(is_kind & ~greedy), nk.weights(q, rows.tau_g, valid), weights)
            logprobs = torch.where(is_kind, nk.density(spec.opts.mode)(cand_lp, q, spec.opts, valid), logprobs)
    tokens = ids[:, 0]
    if spec.opts.degenerate_as_discrete:
        logprobs = torch.where(n_kept > 1, logprobs, cand_lp[:, 0])
    # greedy rows of a noisy kind take the noise-free mixture and score 0 (decode_step's rule)
    noisy = torch.zeros_like(greedy)
    for kind in spec.kinds:
        if get_noise(kind).stochastic:
            noisy = noisy | (rows.noise == get_noise(kind).code)
    logprobs = torch.where(greedy & noisy, torch.zeros_like(logprobs), logprobs)
    q = torch.where(valid, q, torch.zeros_like(q))
    ids = torch.where(valid, ids, torch.zeros_like(ids))
    return tokens, ids, q, weights.to(torch.float32), logprobs, n_kept


def batched_decode_step(
    logits: Tensor, phase: PhaseState, rows: RowSettings, u: StepUniforms, spec: BatchSpec
) -> tuple[BatchStep, PhaseState]:
    """One step for ``logits [B, V]`` in mixed phases; returns the step and the new phase state (module doc)."""
    b, v = logits.shape
    m = min(spec.width, v)
    thinking = phase.thinking
    stale = ~thinking & rows.compat_stale_phase_mask
    use_think = thinking | stale
    t = torch.where(use_think, rows.think.temperature, rows.answer.temperature)
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    logp = torch.log_softmax(x / _col(torch.where(t > 0, t, torch.ones_like(t)).to(x.dtype)), dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp).sum(-1)
    phase, forced = phase.forced_tokens(entropy)
    is_forced = forced >= 0
    full_mass = probs.sum(-1)
    vals, idx = probs.topk(m, dim=-1)

    s_tok, s_ids, s_q, s_w, s_lp, s_kept = _soft_candidates(logp, vals, idx, full_mass, rows, u, spec)

    ans = rows.answer
    keep_a = prefix_keep_mask(vals, ans, v, full_mass=full_mass)
    kept_a = vals * keep_a
    sampled = sample_from_sorted(idx, kept_a / kept_a.sum(-1, keepdim=True), u.sample)
    a_tok = torch.where(ans.greedy, logp.argmax(-1), sampled)

    tokens = torch.where(is_forced, forced, torch.where(use_think, s_tok, a_tok))
    token_lp = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    phase, ended = phase.update(tokens)
    soft = use_think & ~is_forced & ~ended & ~stale

    first = torch.zeros(b, spec.k_max, dtype=torch.bool, device=logits.device)
    first[:, 0] = True
    sc = _col(soft)
    ids = torch.where(sc, s_ids, torch.where(first, _col(tokens), torch.zeros_like(s_ids)))
    q = torch.where(sc, s_q, torch.zeros_like(s_q))
    weights = torch.where(sc, s_w, first.to(s_w.dtype))

    def overflow(st: SamplingTensors) -> Tensor:
        k_on = (st.top_k > 0) & (st.top_k < v)
        return k_on & (st.top_k > m)

    a_over = overflow(ans) | (~((ans.top_k > 0) & (ans.top_k <= m)) & keep_a[:, -1] & (m < v) & ~ans.greedy)
    truncated = ~is_forced & torch.where(use_think, overflow(rows.think), a_over)
    step = BatchStep(
        tokens=tokens,
        ids=ids,
        q=q,
        weights=weights,
        soft=soft,
        logprobs=torch.where(soft, s_lp, token_lp),
        token_logprobs=token_lp,
        entropy=entropy,
        n_kept=torch.where(soft, s_kept, torch.ones_like(s_kept)),
        answer=~thinking,
        truncated=truncated,
        forced=is_forced,
    )
    return step, phase


def sample_step(
    logits: Tensor, phase: PhaseState, rows: RowSettings, seed: Tensor, position: Tensor, spec: BatchSpec
) -> tuple[BatchStep, PhaseState]:
    """The whole per-step sampling as one function: counter uniforms keyed by ``(seed, position)`` and
    :func:`batched_decode_step`. Static shapes at a batch size and no host sync, so
    ``torch.compile(sample_step, fullgraph=True)`` makes it one graph (CUDA-graph capturable)."""
    return batched_decode_step(logits, phase, rows, counter_step_uniforms(seed, position, spec), spec)


def batch_bucket(b: int) -> int:
    """The padded batch size of a compiled step (one graph per bucket): the next power of two, at least 8."""
    return max(8, 1 << (b - 1).bit_length())
