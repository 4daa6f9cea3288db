"""Noise on the soft-thinking mixture (spec §1 step 4): the one registry of noise kinds.

Each noise kind turns the filtered candidate probabilities ``p~ [B, K]`` into the stored value
``q`` (what the trace ships), maps ``q`` to the mixture weights ``w`` and scores ``q`` under the
policy (the log-densities of :mod:`soft_thinking.core.density`):

=========  ==========================================================  ======================
kind       stored ``q``                                                weights ``w``
=========  ==========================================================  ======================
none       ``p~``                                                      ``q / sum q``
gumbel     ``log(p~ + 1e-6) + noise_factor * clamp(g, lo, hi)``,        ``softmax(q / tau_g)``
           ``g = -log(-log U) ~ Gumbel(0, 1)``
dirichlet  ``x ~ Gamma(alpha * p~, 1)`` (0 where ``p~ = 0``)             ``x / sum x``
gaussian   ``x ~ N(p~, sigma^2)`` clipped to ``[max(p~ - c, 0), p~ + c]``  ``x / sum x``
           (0 where ``p~ = 0``)
=========  ==========================================================  ======================

The visible token of the step is the candidate with the largest ``q`` (for gumbel this is the
Gumbel-max trick: ``argmax q ~ p~``) and so the largest weight.

**Randomness is injected.** A draw is a pure function ``q = kind.draw(p~, u, params)`` of
supplied uniforms ``u [B, K, S]``, where ``u[..., i]`` is counter stream ``kind.streams(params)[i]``
(:mod:`soft_thinking.core.rng`). Two sources produce ``u``:

* :class:`CounterSource` ``(seed [B], position [B])``: the counter-based Philox generator,
  batch-invariant and identical in every engine (the default for new code);
* :class:`GeneratorSource` (per-row ``torch.Generator`` objects): row ``b`` draws
  ``torch.rand(K * S)`` from ``generators[b]`` alone (the original reference-engine behaviour).

Both have ``source(n_candidates, streams) -> u`` and ``source.rows(index)``. The trainer never
draws: it rebuilds ``w`` from the stored ``q`` with :func:`mixture_weights`, the same function
the rollout used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor

from soft_thinking.core.density import (
    LOG_EPS,
    SoftDensity,
    dirichlet_step_logprob,
    gaussian_step_logprob,
    gumbel_step_logprob,
    gumbel_step_logprob_exact,
    none_step_logprob,
)
from soft_thinking.core.rng import (
    STREAM_GUMBEL,
    STREAM_NORMAL,
    STREAM_SAMPLE,
    counter_uniforms,
    gamma_boost_stream,
    gamma_streams,
    normal_from_uniforms,
)

__all__ = [
    "LOG_EPS", "NOISE_KINDS", "NOISE_REGISTRY", "CounterSource", "GeneratorSource", "NoiseKind",
    "NoiseParams", "as_source", "draw_noise", "get_noise", "mixture_weights", "sample_uniforms",
]

_TINY = torch.finfo(torch.float32).tiny  # draws are floored here so they survive float32 storage


@dataclass(frozen=True)
class NoiseParams:
    """Noise settings: a view of :class:`SoftThinkingConfig` (``cfg.noise_params()``), no defaults of its own.

    ``tau_g`` and ``noise_factor`` may be per-row ``[B]`` tensors; the rest are per batch.
    """

    tau_g: float | Tensor  # SoftThinkingConfig.gumbel_softmax_temperature
    noise_factor: float | Tensor
    gumbel_clamp: tuple[float, float] | None
    dirichlet_alpha: float
    gaussian_sigma: float
    gaussian_clip: float
    gamma_proposals: int = 8  # Marsaglia-Tsang proposals per draw (all rejected: p < 1e-10)

    def rows(self, index: Tensor) -> NoiseParams:
        """The settings of rows ``index`` (per-row tensors are indexed, scalars kept)."""
        pick = (lambda x: x[index] if isinstance(x, Tensor) and x.dim() > 0 else x)  # noqa: E731
        return replace(self, tau_g=pick(self.tau_g), noise_factor=pick(self.noise_factor))


def _per_row(x: float | Tensor, like: Tensor) -> float | Tensor:
    """A scalar, or a ``[B]`` tensor as a ``[B, 1]`` column in ``like``'s dtype."""
    if isinstance(x, Tensor):
        x = x.to(device=like.device, dtype=like.dtype)
        return x.unsqueeze(-1) if x.dim() > 0 else x
    return x


# ---------------------------------------------------------------------------------------------
# uniform sources
# ---------------------------------------------------------------------------------------------
class UniformSource(Protocol):
    def __call__(self, n_candidates: int, streams: Sequence[int]) -> Tensor: ...  # u [B, n, len(streams)]

    def rows(self, index: Tensor) -> UniformSource: ...


def row_uniform(generators: Sequence[torch.Generator], n: int, device: torch.device | str) -> Tensor:
    """``U [B, n]`` in ``[0, 1)``, row ``b`` drawn from ``generators[b]`` (float64)."""
    if not generators:
        return torch.empty(0, n, dtype=torch.float64, device=device)
    return torch.stack([torch.rand(n, generator=g, device=device, dtype=torch.float64) for g in generators])


class GeneratorSource:
    """Uniforms from per-row ``torch.Generator`` objects: ``u[b] = rand(n * S, generators[b]).view(n, S)``."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    def __call__(self, n_candidates: int, streams: Sequence[int]) -> Tensor:
        s = len(streams)
        device = self.generators[0].device if self.generators else "cpu"
        if s == 0:  # a noise-free draw consumes nothing
            return torch.empty(len(self.generators), n_candidates, 0, dtype=torch.float64, device=device)
        return row_uniform(self.generators, n_candidates * s, device).view(-1, n_candidates, s)

    def rows(self, index: Tensor) -> GeneratorSource:
        return GeneratorSource([self.generators[i] for i in index.tolist()])


class CounterSource:
    """Counter-based uniforms (Philox) keyed by each row's ``seed`` and ``position`` (both int64 ``[B]``)."""

    def __init__(self, seed: Tensor, position: Tensor) -> None:
        self.seed, self.position = seed, position

    def __call__(self, n_candidates: int, streams: Sequence[int]) -> Tensor:
        return counter_uniforms(self.seed, self.position, n_candidates, tuple(streams))

    def rows(self, index: Tensor) -> CounterSource:
        return CounterSource(self.seed[index], self.position[index])


def as_source(randomness: Sequence[torch.Generator] | UniformSource) -> UniformSource:
    """A uniform source from a source or from a sequence of per-row generators."""
    if isinstance(randomness, (GeneratorSource, CounterSource)) or hasattr(randomness, "rows"):
        return randomness  # type: ignore[return-value]
    return GeneratorSource(randomness)  # type: ignore[arg-type]


def sample_uniforms(source: UniformSource) -> Tensor:
    """The one uniform ``[B]`` per row of a discrete (inverse-CDF) step: stream ``STREAM_SAMPLE``."""
    return source(1, (STREAM_SAMPLE,))[:, 0, 0]


# ---------------------------------------------------------------------------------------------
# pure draws: (p~ [B, K], u [B, K, S], params) -> q [B, K] float32
# ---------------------------------------------------------------------------------------------
def gumbel_from_uniform(u: Tensor) -> Tensor:
    """``g = -log(-log U)`` in float64 with ``U`` kept inside ``(0, 1)``: ``g ~ Gumbel(0, 1)``."""
    u = u.to(torch.float64)
    eps = torch.finfo(torch.float64).eps
    return -torch.log(-torch.log(u.clamp(eps, 1.0 - eps)))


def gamma_from_uniforms(concentration: Tensor, u: Tensor) -> Tensor:
    """``x ~ Gamma(a, 1)`` per entry of ``concentration [B, K]`` from ``u [B, K, 3P + 1]`` (float64).

    Marsaglia-Tsang with ``P`` proposals: for ``a >= 1``, ``d = a - 1/3``, ``c = 1/sqrt(9d)``,
    proposal ``j`` is ``v = (1 + c n_j)^3`` with ``n_j`` = Box-Muller of ``u[..., 3j], u[..., 3j+1]``,
    accepted when ``log u[..., 3j+2] < n^2/2 + d - d v + d log v``; ``x = d v`` of the first
    accepted proposal (``x = d`` if all ``P`` are rejected: probability < 0.05^P). For ``a < 1``:
    ``Gamma(a) = Gamma(a + 1) * U^(1/a)`` with ``U = u[..., 3P]``. Entries with ``a == 0`` are 0.
    """
    a = concentration.to(torch.float64)
    p = (u.shape[-1] - 1) // 3
    prop = u[..., : 3 * p].reshape(*a.shape, p, 3).to(torch.float64)
    n = normal_from_uniforms(prop[..., 0], prop[..., 1])
    boost = a < 1
    d = (torch.where(boost, a + 1, a) - 1.0 / 3.0).unsqueeze(-1)
    c = 1.0 / torch.sqrt(9.0 * d)
    v = (1 + c * n) ** 3
    ok = (v > 0) & (torch.log(prop[..., 2]) < 0.5 * n**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
    first = ok.to(torch.int8).argmax(-1, keepdim=True)  # first accepted proposal
    value = torch.where(ok.any(-1), (d * v).gather(-1, first).squeeze(-1), d.squeeze(-1))
    ub = u[..., 3 * p].to(torch.float64)
    value = torch.where(boost, value * ub ** (1.0 / a.clamp_min(1e-300)), value)
    return torch.where(a > 0, value, torch.zeros_like(value))


def draw_none(p_tilde: Tensor, u: Tensor, params: NoiseParams) -> Tensor:
    """Plain Soft Thinking: ``q = p~`` (no randomness)."""
    return p_tilde.to(torch.float32)


def draw_gumbel(p_tilde: Tensor, u: Tensor, params: NoiseParams) -> Tensor:
    """``q = log(p~ + 1e-6) + noise_factor * clamp(g, lo, hi)``, ``g = -log(-log u[..., 0])``."""
    g = gumbel_from_uniform(u[..., 0])
    if params.gumbel_clamp is not None:
        g = g.clamp(params.gumbel_clamp[0], params.gumbel_clamp[1])
    return (torch.log(p_tilde.to(torch.float64) + LOG_EPS) + _per_row(params.noise_factor, g) * g).to(torch.float32)


def draw_dirichlet(p_tilde: Tensor, u: Tensor, params: NoiseParams) -> Tensor:
    """``x_i ~ Gamma(alpha * p~_i, 1)``; ``x / sum x`` is a Dirichlet(alpha p~) draw."""
    x = gamma_from_uniforms(params.dirichlet_alpha * p_tilde.to(torch.float64), u)
    return torch.where(p_tilde > 0, x.clamp_min(_TINY), torch.zeros_like(x)).to(torch.float32)


def draw_gaussian(p_tilde: Tensor, u: Tensor, params: NoiseParams) -> Tensor:
    """``x_i = clip(p~_i + sigma n_i, max(p~_i - c, 0), p~_i + c)``, ``n`` = Box-Muller(u0, u1); 0 where ``p~_i = 0``."""
    p = p_tilde.to(torch.float64)
    x = p + params.gaussian_sigma * normal_from_uniforms(u[..., 0], u[..., 1])
    x = torch.minimum(torch.maximum(x, (p - params.gaussian_clip).clamp_min(0.0)), p + params.gaussian_clip)
    return torch.where(p > 0, x.clamp_min(_TINY), torch.zeros_like(x)).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# weights: (q [..., K], tau_g, valid [..., K] | None) -> w [..., K], 0 where not valid
# ---------------------------------------------------------------------------------------------
def normalize_weights(q: Tensor, tau_g: float | Tensor, valid: Tensor | None = None) -> Tensor:
    """``w = q / sum q`` (``tau_g`` unused)."""
    if valid is not None:
        q = torch.where(valid, q, torch.zeros_like(q))
    return q / q.sum(-1, keepdim=True)


def softmax_weights(q: Tensor, tau_g: float | Tensor, valid: Tensor | None = None) -> Tensor:
    """``w = softmax(q / tau_g)``; ``tau_g`` a float or a tensor broadcasting to ``q[..., 0]``."""
    tau = torch.as_tensor(tau_g, dtype=q.dtype, device=q.device)
    if tau.dim() > 0:
        tau = tau.unsqueeze(-1)
    x = q / tau
    if valid is not None:
        x = x.masked_fill(~valid, float("-inf"))
    return torch.softmax(x, dim=-1)


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseKind:
    """Everything about one noise kind: its draw, its weights and its log-density per estimator mode."""

    name: str
    flag: str | None  # the original's boolean sampling flag that selects it (None: the default mode)
    stochastic: bool
    streams: Callable[[NoiseParams], tuple[int, ...]]  # counter streams that draw() reads, in order
    draw: Callable[[Tensor, Tensor, NoiseParams], Tensor]
    weights: Callable[..., Tensor]  # (q, tau_g, valid=None) -> w
    log_density: Mapping[str, SoftDensity]  # estimator mode ("paper" | "exact") -> density

    @property
    def code(self) -> int:
        """The kind's integer id in per-row tensors (its index in :data:`NOISE_KINDS`)."""
        return list(NOISE_REGISTRY).index(self.name)

    def density(self, mode: str) -> SoftDensity:
        if mode not in self.log_density:
            raise ValueError(f"no {self.name!r} log-density for logprob_mode={mode!r}; allowed: {sorted(self.log_density)}")
        return self.log_density[mode]


def _gamma_layout(params: NoiseParams) -> tuple[int, ...]:
    streams = [s for j in range(params.gamma_proposals) for s in gamma_streams(j)]
    return (*streams, gamma_boost_stream())


NOISE_REGISTRY: dict[str, NoiseKind] = {}


def register_noise(kind: NoiseKind) -> NoiseKind:
    NOISE_REGISTRY[kind.name] = kind
    return kind


register_noise(NoiseKind("none", None, False, lambda p: (), draw_none, normalize_weights,
                         {"paper": none_step_logprob, "exact": none_step_logprob}))
register_noise(NoiseKind("gumbel", "add_noise_gumbel_softmax", True, lambda p: (STREAM_GUMBEL,), draw_gumbel,
                         softmax_weights, {"paper": gumbel_step_logprob, "exact": gumbel_step_logprob_exact}))
register_noise(NoiseKind("dirichlet", "add_noise_dirichlet", True, _gamma_layout, draw_dirichlet, normalize_weights,
                         {"paper": dirichlet_step_logprob, "exact": dirichlet_step_logprob}))
register_noise(NoiseKind("gaussian", "add_noise_gaussian", True, lambda p: tuple(STREAM_NORMAL), draw_gaussian,
                         normalize_weights, {"paper": gaussian_step_logprob, "exact": gaussian_step_logprob}))

NOISE_KINDS: tuple[str, ...] = tuple(NOISE_REGISTRY)
"""The noise kinds, in code order: ``("none", "gumbel", "dirichlet", "gaussian")``."""


def get_noise(name: str) -> NoiseKind:
    if name not in NOISE_REGISTRY:
        raise ValueError(f"unknown noise kind {name!r}; allowed: {sorted(NOISE_REGISTRY)}")
    return NOISE_REGISTRY[name]


def draw_noise(name: str, p_tilde: Tensor, source: UniformSource, params: NoiseParams) -> Tensor:
    """``q`` of kind ``name`` for ``p~ [B, K]`` with uniforms from ``source`` (float32 ``[B, K]``)."""
    kind = get_noise(name)
    return kind.draw(p_tilde, source(p_tilde.shape[-1], kind.streams(params)), params)


def mixture_weights(q: Tensor, noise: str, tau_g: float | Tensor, valid: Tensor | None = None) -> Tensor:
    """The mixture weights of stored ``q`` (float32): the one function rollout and replay share."""
    return get_noise(noise).weights(q.to(torch.float32), tau_g, valid)
