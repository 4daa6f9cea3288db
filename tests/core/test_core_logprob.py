"""Log-likelihood estimators against float64 references, gradchecks and the analytic gradient (spec §3)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.logprob import (
    dirichlet_step_logprob,
    gaussian_step_logprob,
    gumbel_step_logprob,
    gumbel_step_logprob_exact,
    mixed_logprobs,
)
from soft_thinking.core.sampling import SamplingTensors, log_softmax_at_temperature
from soft_thinking.core.step import soft_step

OPTS = SoftThinkingConfig().logprob_options()  # the paper's estimator (the config's defaults)


# the tests' shorthands: one estimator on raw logits [N, V], candidates [N, K], stored values [N, K] -> [N]
def _cand_lp(logits, ids, temperature):
    return log_softmax_at_temperature(logits, temperature).gather(-1, ids.long())


def gumbel_logprob(logits, ids, q, temperature=1.0, clamp=(-1.5, 3.0), logp_floor=-3.0):
    opts = SoftThinkingConfig(gumbel_clamp=clamp, logp_floor=logp_floor).logprob_options()
    return gumbel_step_logprob(_cand_lp(logits, ids, temperature), q, opts)


def gumbel_logprob_exact(logits, ids, q, temperature=1.0):
    opts = SoftThinkingConfig(logprob_mode="exact").logprob_options()
    return gumbel_step_logprob_exact(_cand_lp(logits, ids, temperature), q, opts)


def dirichlet_logprob(logits, ids, x, temperature=1.0, alpha=1.0):
    opts = SoftThinkingConfig(dirichlet_alpha=alpha).logprob_options()
    return dirichlet_step_logprob(_cand_lp(logits, ids, temperature), x, opts)


def gaussian_logprob(logits, ids, x, temperature=1.0, sigma=0.05):
    opts = SoftThinkingConfig(gaussian_sigma=sigma).logprob_options()
    return gaussian_step_logprob(_cand_lp(logits, ids, temperature), x, opts)


def ref_gumbel(z: np.ndarray, ids: np.ndarray, q: np.ndarray, t: float, clamp=(-1.5, 3.0), floor=-3.0) -> float:
    """float64, one step, written from the spec's formulas."""
    lp = z / t - np.log(np.exp(z / t - (z / t).max()).sum()) - (z / t).max()
    pc = np.exp(lp[ids])
    p_prime = pc / pc.sum()
    ell = np.log(p_prime + 1e-6)
    g = q - ell
    if clamp is not None:
        g = np.clip(g, *clamp)
    phi = -g - np.exp(-g)
    m = ell > floor
    return float(phi[m].mean()) if m.any() else 0.0


def random_case(seed: int, n: int = 6, v: int = 30, k: int = 5):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, v, generator=g, dtype=torch.float64) * 2
    ids = torch.stack([torch.randperm(v, generator=g)[:k] for _ in range(n)])
    q = torch.log(torch.rand(n, k, generator=g, dtype=torch.float64)) + torch.randn(n, k, generator=g, dtype=torch.float64)
    return z, ids, q


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t", [1.0, 0.6])
def test_gumbel_logprob_matches_float64_reference(seed: int, t: float) -> None:
    z, ids, q = random_case(seed)
    got = gumbel_logprob(z, ids, q, temperature=t).double()
    ref = [ref_gumbel(z[i].numpy(), ids[i].numpy(), q[i].numpy(), t) for i in range(len(z))]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)


def test_exact_variant_reference() -> None:
    z, ids, q = random_case(11)
    got = gumbel_logprob_exact(z, ids, q).double()
    for i in range(len(z)):
        lp = torch.log_softmax(z[i], -1)[ids[i]]
        ell = torch.log(torch.softmax(lp, -1) + 1e-6)
        g = q[i] - ell
        assert abs(float((-g - torch.exp(-g)).sum()) - float(got[i])) < 1e-5


def test_empty_mask_gives_zero_and_k1() -> None:
    # K = 30 uniform candidates: log(1/30 + 1e-6) < -3, so no candidate passes the floor
    z = torch.zeros(1, 40)
    ids = torch.arange(30).unsqueeze(0)
    assert gumbel_logprob(z, ids, torch.zeros(1, 30)).item() == 0.0
    # K = 1: p' = 1, l' = log(1 + 1e-6), phi(clamp(q - l'))
    lp = gumbel_logprob(torch.randn(1, 40), torch.tensor([[3]]), torch.tensor([[0.4]]))
    g = 0.4 - math.log(1 + 1e-6)
    assert abs(lp.item() - (-g - math.exp(-g))) < 1e-6


def test_gradcheck_gumbel_and_mixed() -> None:
    z, ids, q = random_case(5, n=3, v=12, k=4)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: gumbel_logprob(x, ids, q, clamp=None), (z,))
    assert torch.autograd.gradcheck(lambda x: gumbel_logprob(x, ids, q), (z,))
    tokens = ids[:, 0]
    soft = torch.tensor([True, False, True])
    for noise in ("gumbel", "dirichlet", "gaussian"):
        qq = q if noise == "gumbel" else q.exp()
        assert torch.autograd.gradcheck(
            lambda x, n=noise, qq=qq: mixed_logprobs(x, tokens, ids, qq, soft, 0.7, n, OPTS).double(), (z,)
        )


def test_analytic_gradient_where_clamp_inactive() -> None:
    """The library's gradient equals the paper's formula: d log pi / d l'_i = (1 - exp(-g'_i)) / |M| on
    M = {l' > -3} (0 elsewhere), pushed through l' = log(p' + 1e-6) and p' = softmax(candidate log-probs)."""
    cand = torch.log(torch.tensor([0.6, 0.25, 0.1, 0.04, 0.01], dtype=torch.float64)).requires_grad_(True)
    q = torch.tensor([0.1, -0.9, -2.5, -3.0, -4.0], dtype=torch.float64)
    gumbel_step_logprob(cand, q, OPTS).backward()  # the paper estimator, default clamp

    p = torch.softmax(cand.detach(), -1)
    ell = torch.log(p + 1e-6)
    g = q - ell
    m = ell > -3.0
    assert 0 < int(m.sum()) < len(m)  # the floor mask matters in this case
    assert bool(((g > -1.5) & (g < 3.0))[m].all())  # and the clamp is inactive where it counts
    d_ell = torch.where(m, (1 - torch.exp(-g)) / m.sum(), torch.zeros_like(g))
    d_p = d_ell / (p + 1e-6)
    jac = torch.diag(p) - p.outer(p)  # d p' / d cand (symmetric)
    torch.testing.assert_close(cand.grad, jac @ d_p)


def test_clamped_candidates_have_zero_gradient() -> None:
    cand = torch.log(torch.tensor([[0.7, 0.3]], dtype=torch.float64)).requires_grad_(True)
    q = torch.tensor([[10.0, 10.0]], dtype=torch.float64)  # g' >> 3: both clamped
    gumbel_step_logprob(cand, q, OPTS).backward()
    assert torch.equal(cand.grad, torch.zeros_like(cand))


def test_dirichlet_and_gaussian_densities_match_scipy() -> None:
    z, ids, _ = random_case(7, n=4, k=3)
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.01
    got_d = dirichlet_logprob(z, ids, x, alpha=2.0)
    got_g = gaussian_logprob(z, ids, x, sigma=0.05)
    for i in range(4):
        pc = torch.softmax(torch.log_softmax(z[i], -1)[ids[i]], -1).numpy()
        m = pc > 0.05
        ld = np.clip(stats.gamma(2.0 * pc).logpdf(x[i].numpy()), -5, 3)
        lg = stats.norm(pc, 0.05).logpdf(x[i].numpy())
        assert abs(ld[m].mean() - float(got_d[i])) < 1e-5
        assert abs(lg[m].mean() - float(got_g[i])) < 1e-4


@pytest.mark.parametrize("noise", ["gumbel", "dirichlet", "gaussian"])
def test_function_level_replay_parity(noise: str) -> None:
    """The log-prob a soft step reports equals the trainer's function on the same logits."""
    b, v = 16, 50
    logits = torch.randn(b, v, generator=torch.Generator().manual_seed(9)) * 3
    st = SamplingTensors.build(b, "cpu", 0.8, 5, 0.95, 0.0)
    gens = [torch.Generator().manual_seed(i) for i in range(b)]
    r = soft_step(logits, st, gens, noise, SoftThinkingConfig().noise_params(), 5, OPTS)
    again = mixed_logprobs(logits, r.tokens, r.ids, r.q, r.soft, 0.8, noise, OPTS)
    assert (again - r.logprobs).abs().max() <= 1e-6
    if noise == "gumbel":
        assert (gumbel_logprob(logits, r.ids, r.q, 0.8) - r.logprobs).abs().max() <= 1e-6


def test_degenerate_as_discrete() -> None:
    z, ids, q = random_case(3, n=2)
    tokens = ids[:, 0]
    soft = torch.tensor([True, True])
    n_kept = torch.tensor([1, 3])
    opts = SoftThinkingConfig(degenerate_as_discrete=True).logprob_options()
    out = mixed_logprobs(z, tokens, ids, q, soft, 1.0, "gumbel", opts, n_kept)
    assert abs(out[0].item() - torch.log_softmax(z[0], -1)[tokens[0]].item()) < 1e-6
    assert abs(out[1].item() - gumbel_logprob(z[1:], ids[1:], q[1:]).item()) < 1e-6
    with pytest.raises(ValueError, match="n_kept"):
        mixed_logprobs(z, tokens, ids, q, soft, 1.0, "gumbel", opts)
    with pytest.raises(ValueError, match="allowed"):
        mixed_logprobs(z, tokens, ids, q, soft, 1.0, "levy", OPTS)


def test_mixed_batch_shapes_and_discrete_positions() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 20, generator=g)
    ids = torch.randint(0, 20, (2, 3, 4), generator=g)
    tokens = ids[..., 0]
    q = torch.randn(2, 3, 4, generator=g)
    soft = torch.tensor([[True, False, True], [False, False, True]])
    temps = torch.tensor([[0.7, 0.7, 1.0], [1.0, 1.0, 0.7]])
    out = mixed_logprobs(logits, tokens, ids, q, soft, temps, "gumbel", OPTS)
    assert out.shape == (2, 3)
    lp = torch.log_softmax(logits[0, 1] / 0.7, -1)[tokens[0, 1]]
    assert abs(out[0, 1].item() - lp.item()) < 1e-6
    assert abs(out[1, 2].item() - gumbel_logprob(logits[1, 2:], ids[1, 2:], q[1, 2:], 0.7).item()) < 1e-6


def test_floor_is_a_hard_threshold_that_a_rounding_step_can_cross() -> None:
    """The paper estimator jumps when a candidate's l' crosses the floor (the README's replay spikes).

    Two candidates, the second at l' = -3 -/+ 1e-4: the mean runs over one candidate, then over two.
    """
    q = torch.tensor([[0.5, 1.5]], dtype=torch.float64)
    got = []
    for ell2 in (-3.0 - 1e-4, -3.0 + 1e-4):
        p2 = math.exp(ell2) - 1e-6  # l' = log(p' + 1e-6)
        cand_lp = torch.log(torch.tensor([[1.0 - p2, p2]], dtype=torch.float64))
        got.append(gumbel_step_logprob(cand_lp, q, OPTS).item())
    phi = [-g - math.exp(-g) for g in (min(max(0.5 - math.log(1.0 - p2 + 1e-6), -1.5), 3.0),
                                       min(max(1.5 - (-3.0 + 1e-4), -1.5), 3.0))]
    assert got[0] == pytest.approx(phi[0], abs=1e-4)  # second candidate below the floor: excluded
    assert got[1] == pytest.approx((phi[0] + phi[1]) / 2, abs=1e-4)  # above: included
    assert abs(got[1] - got[0]) > 0.5  # a 2e-4 move of l' moves the estimate by O(1)
