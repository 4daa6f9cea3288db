"""Noise draws as pure functions of uniforms: distributions (KS / chi-square), both uniform sources, the registry."""

import numpy as np
import pytest
import torch
from scipy import stats

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.density import gumbel_step_logprob
from soft_thinking.core.noise import (
    LOG_EPS,
    NOISE_KINDS,
    NOISE_REGISTRY,
    CounterSource,
    GeneratorSource,
    draw_noise,
    gamma_from_uniforms,
    get_noise,
    mixture_weights,
    row_uniform,
)


def noise_params(**fields):
    """The NoiseParams view of a SoftThinkingConfig with these fields (the rest its defaults)."""
    return SoftThinkingConfig(**fields).noise_params()


def gens(n: int, seed: int = 0) -> GeneratorSource:
    return GeneratorSource([torch.Generator().manual_seed(seed * 1000 + i) for i in range(n)])


def counter(n: int, seed: int = 0) -> CounterSource:
    return CounterSource(torch.arange(n, dtype=torch.int64) + 7919 * seed, torch.full((n,), 11, dtype=torch.int64))


SOURCES = {"generator": gens, "counter": counter}


@pytest.mark.parametrize("source", SOURCES)
def test_unclamped_gumbel_draws_pass_ks_test(source: str) -> None:
    p = torch.full((400, 5), 0.2)
    q = draw_noise("gumbel", p, SOURCES[source](400), noise_params(gumbel_clamp=None))
    g = (q.double() - np.log(0.2 + LOG_EPS)).flatten().numpy()
    assert stats.kstest(g, stats.gumbel_r.cdf).pvalue > 1e-3
    # and a wrong reference (a shifted Gumbel) is rejected: the test has power
    assert stats.kstest(g, lambda x: stats.gumbel_r.cdf(x, loc=0.2)).pvalue < 1e-3


def test_clamp_and_per_row_noise_factor() -> None:
    p = torch.full((200, 5), 0.2)
    nf = torch.where(torch.arange(200) % 2 == 0, 2.0, 1.0)
    q = draw_noise("gumbel", p, gens(200), noise_params(gumbel_clamp=(-1.5, 3.0), noise_factor=nf))
    g = (q.double() - np.log(0.2 + LOG_EPS)) / nf.double().unsqueeze(-1)
    assert g.min() >= -1.5 - 1e-5 and g.max() <= 3.0 + 1e-5
    assert (g.isclose(torch.tensor(-1.5, dtype=torch.float64), atol=1e-5)).any()
    # a scalar factor of 2 gives the even rows' values exactly
    q2 = draw_noise("gumbel", p[::2], gens(200).rows(torch.arange(0, 200, 2)), noise_params(noise_factor=2.0))
    assert torch.equal(q2, q[::2])


@pytest.mark.parametrize("source", SOURCES)
def test_argmax_q_is_distributed_as_p_tilde(source: str) -> None:
    p_tilde = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    n = 8000
    q = draw_noise("gumbel", p_tilde.expand(n, -1), SOURCES[source](n, 1), noise_params(gumbel_clamp=None))
    counts = np.bincount(q.argmax(-1).numpy(), minlength=5)
    assert counts[4] == 0  # a filtered-out candidate is never chosen
    assert stats.chisquare(counts[:4], p_tilde[:4].numpy() * n).pvalue > 1e-3
    # negative control: the same counts against a slightly different p are rejected
    wrong = np.array([0.45, 0.3, 0.15, 0.1])
    assert stats.chisquare(counts[:4], wrong * n).pvalue < 1e-3


@pytest.mark.parametrize("source", SOURCES)
def test_rows_draw_only_from_their_own_key(source: str) -> None:
    p = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(3)), -1)
    for name in NOISE_KINDS:
        full = draw_noise(name, p, SOURCES[source](6), noise_params())
        alone = draw_noise(name, p[2:3], SOURCES[source](6).rows(torch.tensor([2])), noise_params())
        assert torch.equal(full[2:3], alone), name


def test_generator_gumbel_consumes_k_uniforms_like_before() -> None:
    """The generator path of gumbel reads ``rand(K)`` per row: the draws of the per-row-generator engine."""
    p = torch.softmax(torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), -1)
    u = row_uniform(gens(3).generators, 5, "cpu")
    g = -torch.log(-torch.log(u))
    ref = (torch.log(p.double() + LOG_EPS) + g.clamp(-1.5, 3.0)).float()
    assert torch.equal(draw_noise("gumbel", p, gens(3), noise_params()), ref)


@pytest.mark.parametrize("a", [0.3, 1.0, 4.5])
@pytest.mark.parametrize("source", SOURCES)
def test_gamma_sampler_ks(a: float, source: str) -> None:
    params = noise_params()
    streams = get_noise("dirichlet").streams(params)
    assert len(streams) == 3 * params.gamma_proposals + 1
    u = SOURCES[source](500, 2)(4, streams)
    x = gamma_from_uniforms(torch.full((500, 4), a, dtype=torch.float64), u).flatten().numpy()
    assert stats.kstest(x, stats.gamma(a).cdf).pvalue > 1e-3
    assert stats.kstest(x, stats.gamma(a * 1.15).cdf).pvalue < 1e-3  # negative control


def test_gamma_zero_concentration_and_all_rejected_fallback() -> None:
    # u1 = u2 = 1/2 -> n = -sqrt(2 log 2); for a = 2 (d = 5/3) the bound n^2/2 + d - dv + d log v is
    # about -0.015, so acceptance uniforms at 1 - 2^-24 reject every proposal: x falls back to d.
    u = torch.full((1, 2, 3 * 2 + 1), 0.5, dtype=torch.float64)
    u[..., 2::3] = 1 - 2**-24
    x = gamma_from_uniforms(torch.tensor([[0.0, 2.0]]), u)
    assert x[0, 0] == 0
    assert x[0, 1].item() == pytest.approx(5.0 / 3.0)
    u[..., 2] = 2**-24  # the first proposal now passes: x = d (1 + c n)^3
    n = -np.sqrt(2 * np.log(2))
    assert gamma_from_uniforms(torch.tensor([[2.0]]), u[:, :1]).item() == pytest.approx(5 / 3 * (1 + n / np.sqrt(15)) ** 3)


@pytest.mark.parametrize("source", SOURCES)
def test_gaussian_noise_is_normal_before_clipping(source: str) -> None:
    p = torch.full((2000, 3), 1.0 / 3)
    x = draw_noise("gaussian", p, SOURCES[source](2000, 4), noise_params(gaussian_sigma=0.05, gaussian_clip=10.0))
    z = ((x.double() - 1.0 / 3) / 0.05).flatten().numpy()
    assert stats.kstest(z, stats.norm.cdf).pvalue > 1e-3
    assert stats.kstest(z, stats.norm(scale=1.1).cdf).pvalue < 1e-3  # negative control


def test_dirichlet_and_gaussian_zero_for_filtered_candidates_and_weights_normalized() -> None:
    p = torch.tensor([[0.7, 0.3, 0.0]]).expand(50, -1)
    for name in ("dirichlet", "gaussian"):
        x = draw_noise(name, p, gens(50), noise_params())
        assert (x[:, 2] == 0).all() and (x[:, :2] > 0).all()
        w = mixture_weights(x, name, 0.1)
        torch.testing.assert_close(w.sum(-1), torch.ones(50))
    x = draw_noise("gaussian", p, gens(50), noise_params(gaussian_sigma=1.0, gaussian_clip=0.15))
    assert (x[:, 0] >= 0.55 - 1e-6).all() and (x[:, 0] <= 0.85 + 1e-6).all()


def test_weights_softmax_over_per_row_tau_and_valid_mask() -> None:
    q = torch.tensor([[0.0, -1.0, -2.0], [0.5, 0.2, 9.0]])
    tau = torch.tensor([0.5, 1.0])
    w = mixture_weights(q, "gumbel", tau, valid=torch.tensor([[True, True, True], [True, True, False]]))
    torch.testing.assert_close(w[0], torch.softmax(q[0] / 0.5, -1))
    torch.testing.assert_close(w[1], torch.tensor([*torch.softmax(q[1, :2], -1).tolist(), 0.0]))
    wn = mixture_weights(torch.tensor([[0.2, 0.6, 5.0]]), "none", 0.1, valid=torch.tensor([[True, True, False]]))
    torch.testing.assert_close(wn, torch.tensor([[0.25, 0.75, 0.0]]))
    with pytest.raises(ValueError, match="allowed"):
        get_noise("levy")


def test_registry_is_the_one_table() -> None:
    assert NOISE_KINDS == ("none", "gumbel", "dirichlet", "gaussian")
    assert [NOISE_REGISTRY[k].code for k in NOISE_KINDS] == [0, 1, 2, 3]
    flags = {kind.flag: name for name, kind in NOISE_REGISTRY.items() if kind.flag}
    assert flags == {"add_noise_gumbel_softmax": "gumbel", "add_noise_dirichlet": "dirichlet",
                     "add_noise_gaussian": "gaussian"}
    assert get_noise("gumbel").density("paper") is gumbel_step_logprob
    assert not get_noise("none").stochastic and all(NOISE_REGISTRY[k].stochastic for k in NOISE_KINDS[1:])
    with pytest.raises(ValueError, match="logprob_mode='fancy'"):
        get_noise("gumbel").density("fancy")
