"""Tests of soft_thinking.core.grpo: hand references in float64 and parity with verl 0.9.1."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from soft_thinking.core import grpo
from soft_thinking.core.grpo import (
    KL_PENALTY_KINDS,
    LOSS_AGG_MODES,
    PPOLossConfig,
    agg_loss,
    broadcast_to_tokens,
    compute_actor_loss,
    compute_grpo_advantages,
    compute_policy_loss_vanilla,
    kl_penalty,
)


@pytest.fixture(scope="module")
def core_algos():
    """verl 0.9.1's core_algos for the parity tests; only they skip without verl (the float64 hand
    references above and below always run)."""
    return pytest.importorskip("verl.trainer.ppo.core_algos")


def vanilla(old_log_prob, log_prob, advantages, mask, lo=0.2, hi=0.2, c=3.0, loss_agg_mode="token-mean"):
    """The tests' shorthand: compute_policy_loss_vanilla with explicit clip settings (verl's order)."""
    cfg = PPOLossConfig(clip_ratio_low=lo, clip_ratio_high=hi, clip_ratio_c=c)
    return compute_policy_loss_vanilla(old_log_prob, log_prob, advantages, mask, loss_agg_mode, cfg)


def _rand_batch(seed: int, B: int = 6, T: int = 9, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    log_prob = -torch.rand(B, T, generator=g, dtype=dtype) * 3
    old = log_prob + 0.4 * torch.randn(B, T, generator=g, dtype=dtype)  # ratios well outside [0.8, 1.2]
    adv = torch.randn(B, 1, generator=g, dtype=dtype).expand(B, T).clone()
    lengths = torch.tensor([T, 1, 4, 0, 7, 5][:B])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(dtype)
    return log_prob, old, adv, mask


class _ActorCfg:
    """The attributes verl 0.9.1's compute_policy_loss_vanilla reads from its (Actor)config."""

    def __init__(self, low: float, high: float, c: float):
        self.clip_ratio, self.clip_ratio_low, self.clip_ratio_high, self._c = low, low, high, c
        self.global_batch_info: dict = {}

    def get(self, key: str, default=None):
        return self._c if key == "clip_ratio_c" else default


# ---------------------------------------------------------------------------------------------
# advantages
# ---------------------------------------------------------------------------------------------
def test_grpo_advantages_hand_reference():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5], dtype=torch.float64)
    groups = ["a", "a", "a", "a", "b", "b", "c"]
    adv = compute_grpo_advantages(r, groups)
    # group a: mean 0.5, unbiased std sqrt(1/3) -> +-0.5 / (0.57735 + 1e-6)
    s = math.sqrt(1.0 / 3.0)
    expected = [
        0.5 / (s + 1e-6),
        -0.5 / (s + 1e-6),
        -0.5 / (s + 1e-6),
        0.5 / (s + 1e-6),
        0.0,
        0.0,
        0.5 / (1 + 1e-6),
    ]
    torch.testing.assert_close(adv, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    # Dr.GRPO: no std scaling; singleton keeps r (mean 0)
    dr = compute_grpo_advantages(r, groups, norm_adv_by_std_in_grpo=False)
    torch.testing.assert_close(dr, torch.tensor([0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("norm_by_std", [True, False])
def test_grpo_advantages_match_verl(norm_by_std, core_algos):
    g = torch.Generator().manual_seed(0)
    B, T = 40, 5
    scores = torch.randint(0, 2, (B,), generator=g).float() + 0.1 * torch.randn(B, generator=g)
    # groups of 8, 4, 1 (singleton) and interleaved labels
    index = np.array([f"p{i % 5}" for i in range(32)] + ["q"] * 4 + ["s"] + ["t"] * 3, dtype=object)
    mask = torch.ones(B, T)
    rewards = torch.zeros(B, T)
    rewards[:, -1] = scores
    ref, _ = core_algos.compute_grpo_outcome_advantage(
        rewards, mask, index, epsilon=1e-6, norm_adv_by_std_in_grpo=norm_by_std
    )
    ours = broadcast_to_tokens(compute_grpo_advantages(scores, list(index), norm_adv_by_std_in_grpo=norm_by_std), mask)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert ours[36, 0] == pytest.approx(float(scores[36]) / (1 + 1e-6) if norm_by_std else float(scores[36]))


def test_equal_rewards_give_zero_advantage_and_zero_gradient():
    adv = compute_grpo_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]), [0, 0, 0, 1, 1])
    assert torch.equal(adv, torch.zeros(5))
    log_prob = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    log_prob.requires_grad_(True)
    mask = torch.ones(5, 4, dtype=torch.float64)
    loss, _ = vanilla(log_prob.detach() + 0.1, log_prob, broadcast_to_tokens(adv.double(), mask), mask)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(log_prob.grad) == 0


def test_broadcast_to_tokens_masks():
    out = broadcast_to_tokens(torch.tensor([2.0, -1.0]), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert torch.equal(out, torch.tensor([[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]))


# ---------------------------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------------------------
def test_agg_loss_hand_reference():
    L = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 100.0, 100.0], [100.0] * 4], dtype=torch.float64)
    m = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)
    assert agg_loss(L, m, "token-mean").item() == pytest.approx(15.0 / 5)
    assert agg_loss(L, m, "token-sum").item() == pytest.approx(15.0)
    assert agg_loss(L, m, "seq-mean-token-sum").item() == pytest.approx((6.0 + 9.0) / 2)
    assert agg_loss(L, m, "seq-mean-token-mean").item() == pytest.approx((2.0 + 4.5) / 2)
    assert agg_loss(L, m, "seq-mean-token-sum-norm").item() == pytest.approx((6.0 + 9.0) / 2 / 4)
    assert agg_loss(L, m, "seq-mean-token-sum-norm", loss_scale_factor=10).item() == pytest.approx(0.75)
    assert agg_loss(L, m, "token-mean", batch_num_tokens=10).item() == pytest.approx(1.5)
    assert agg_loss(L, torch.zeros_like(m), "token-mean").item() == 0.0  # verl: NaN
    with pytest.raises(ValueError, match="allowed"):
        agg_loss(L, m, "token-avg")


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_agg_loss_matches_verl(mode, core_algos):
    g = torch.Generator().manual_seed(3)
    L = torch.randn(6, 11, generator=g, dtype=torch.float64)
    m = (torch.rand(6, 11, generator=g) < 0.7).double()
    m[2] = 0  # one fully masked sequence
    torch.testing.assert_close(agg_loss(L, m, mode), core_algos.agg_loss(L, m, mode), rtol=1e-7, atol=0)
    kw = {"global_batch_size": 16, "batch_num_tokens": 40, "loss_scale_factor": 7}
    theirs = core_algos.agg_loss(L, m, mode, dp_size=1, **kw)  # one process: no dp_size here
    torch.testing.assert_close(agg_loss(L, m, mode, **kw), theirs, rtol=1e-7, atol=0)


# ---------------------------------------------------------------------------------------------
# PPO clip loss
# ---------------------------------------------------------------------------------------------
def _ppo_reference(lp, old, adv, mask, lo, hi, c):
    """Per-element float64 loop: the textbook dual-clip PPO objective, token-mean."""
    total, n, clipped, lower, kl = 0.0, 0, 0, 0, 0.0
    for b in range(lp.shape[0]):
        for t in range(lp.shape[1]):
            if mask[b, t] == 0:
                continue
            d = max(-20.0, min(20.0, float(lp[b, t] - old[b, t])))
            r, a = math.exp(d), float(adv[b, t])
            l1, l2 = -a * r, -a * min(max(r, 1 - lo), 1 + hi)
            pg = max(l1, l2)
            if a < 0:
                lower += pg > -a * c
                pg = min(pg, -a * c)
            total, n, clipped, kl = total + pg, n + 1, clipped + (l2 > l1), kl - d
    return total / n, clipped / n, kl / n, lower / n


def test_ppo_clip_loss_hand_reference():
    lp, old, adv, mask = _rand_batch(5)
    old[0, :3] = lp[0, :3] + 2.0  # ratio e^-2: exercises the dual clip when A < 0
    old[4, :3] = lp[4, :3] - 25.0  # log ratio beyond the +-20 clamp
    adv[0] = -1.3
    loss, stats = vanilla(old, lp, adv, mask, 0.2, 0.28, 3.0)
    want = _ppo_reference(lp, old, adv, mask, 0.2, 0.28, 3.0)
    assert loss.item() == pytest.approx(want[0], rel=1e-12)
    assert stats["clipfrac"].item() == pytest.approx(want[1], rel=1e-12)
    assert stats["ppo_kl"].item() == pytest.approx(want[2], rel=1e-12)
    assert stats["clipfrac_lower"].item() == pytest.approx(want[3], rel=1e-12)
    assert 0 < want[3] < want[1] < 1  # the test really exercises both clips


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("seed", [0, 1])
def test_policy_loss_matches_verl(mode, seed, core_algos):
    lp, old, adv, mask = _rand_batch(seed, dtype=torch.float32)
    adv[1] = -adv[1].abs() - 0.5
    old[1] = lp[1] + 1.5  # dual clip active
    loss, stats = vanilla(old, lp, adv, mask, 0.2, 0.3, 3.0, loss_agg_mode=mode)
    ref_loss, ref_stats = core_algos.compute_policy_loss_vanilla(
        old_log_prob=old, log_prob=lp, advantages=adv, response_mask=mask, loss_agg_mode=mode,
        config=_ActorCfg(0.2, 0.3, 3.0),
    )  # fmt: skip
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-7)
    assert stats["clipfrac"].item() == pytest.approx(ref_stats["actor/pg_clipfrac"], abs=1e-6)
    assert stats["ppo_kl"].item() == pytest.approx(ref_stats["actor/ppo_kl"], abs=1e-6)
    assert stats["clipfrac_lower"].item() == pytest.approx(ref_stats["actor/pg_clipfrac_lower"], abs=1e-6)


def test_rollout_is_weights_match_verl(core_algos):
    lp, old, adv, mask = _rand_batch(3, dtype=torch.float32)
    w = torch.rand(lp.shape, generator=torch.Generator().manual_seed(9)) + 0.5
    cfg = PPOLossConfig(clip_ratio_low=0.2, clip_ratio_high=0.3)
    ours, _ = compute_policy_loss_vanilla(old, lp, adv, mask, "token-mean", cfg, rollout_is_weights=w)
    theirs, _ = core_algos.compute_policy_loss_vanilla(old, lp, adv, mask, "token-mean", _ActorCfg(0.2, 0.3, 3.0), w)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_ratio_one_positive_advantage_gives_minus_mean_advantage():
    g = torch.Generator().manual_seed(7)
    adv = torch.rand(4, 6, generator=g, dtype=torch.float64) + 0.1
    lp = torch.randn(4, 6, generator=g, dtype=torch.float64)
    mask = torch.ones(4, 6, dtype=torch.float64)
    mask[3, 2:] = 0
    loss, stats = vanilla(lp.clone(), lp, adv, mask)
    assert loss.item() == pytest.approx(-(adv * mask).sum().item() / mask.sum().item(), rel=1e-14)
    assert stats["clipfrac"].item() == 0 and stats["ppo_kl"].item() == 0


def test_ppo_clip_loss_gradcheck():
    g = torch.Generator().manual_seed(11)
    B, T = 3, 5
    old = torch.randn(B, T, generator=g, dtype=torch.float64)
    # ratios spread across the unclipped and clipped regions, away from the kinks
    offsets = torch.tensor([-1.0, -0.1, 0.05, 0.12, 0.9], dtype=torch.float64)
    lp = (old + offsets).requires_grad_(True)
    adv = torch.tensor([[0.7], [-1.2], [0.3]], dtype=torch.float64).expand(B, T)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[2, 4] = 0

    def f(x):
        return vanilla(old, x, adv, mask, 0.2, 0.2, 3.0)[0]

    assert torch.autograd.gradcheck(f, (lp,), eps=1e-6, atol=1e-8)
    # analytic check of one unclipped token: d loss / d lp = -A r / n_tokens
    f(lp).backward()
    n = mask.sum().item()
    assert lp.grad[0, 1].item() == pytest.approx(-0.7 * math.exp(-0.1) / n, rel=1e-10)
    assert lp.grad[0, 4].item() == 0.0  # A > 0, ratio e^0.9 > 1.2: clipped
    assert lp.grad[1, 0].item() == 0.0  # A < 0, ratio e^-1 < 0.8: clipped


def test_ppo_clip_loss_rejects_bad_dual_clip():
    x = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="clip_ratio_c"):
        vanilla(x, x, x, x + 1, c=1.0)


# ---------------------------------------------------------------------------------------------
# KL penalty
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [*KL_PENALTY_KINDS, "k3+", "k1+", "k2+"])
def test_kl_penalty_matches_verl(kind, core_algos):
    g = torch.Generator().manual_seed(13)
    lp = -torch.rand(5, 7, generator=g, dtype=torch.float64) * 4
    ref = lp + torch.randn(5, 7, generator=g, dtype=torch.float64)
    ref[0, 0] = lp[0, 0] + 30.0  # hits the [-20, 20] and [-10, 10] clamps of k3
    lp1 = lp.clone().requires_grad_(True)
    lp2 = lp.clone().requires_grad_(True)
    ours, theirs = kl_penalty(lp1, ref, kind), core_algos.kl_penalty(lp2, ref, kind)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(lp1.grad, lp2.grad, rtol=1e-12, atol=0)


def test_kl_penalty_hand_values():
    lp = torch.tensor([-1.0, -2.0, -0.5, -1.0], dtype=torch.float64)
    ref = torch.tensor([-1.5, -1.0, -0.5, 40.0], dtype=torch.float64)
    d = lp - ref
    torch.testing.assert_close(kl_penalty(lp, ref, "k1"), d)
    torch.testing.assert_close(kl_penalty(lp, ref, "abs"), d.abs())
    torch.testing.assert_close(kl_penalty(lp, ref, "mse"), 0.5 * d * d)
    k3 = kl_penalty(lp, ref, "low_var_kl")
    assert k3[0].item() == pytest.approx(math.exp(-0.5) + 0.5 - 1, rel=1e-14)
    assert k3[1].item() == pytest.approx(math.exp(1.0) - 1.0 - 1, rel=1e-14)
    assert k3[2].item() == 0.0
    assert k3[3].item() == 10.0  # clamped
    with pytest.raises(ValueError, match="low_var_kl"):
        kl_penalty(lp, ref, "k4")


def test_kl_zero_at_reference_and_k3_nonnegative():
    g = torch.Generator().manual_seed(17)
    lp = torch.randn(1000, generator=g, dtype=torch.float64) * 5
    for kind in KL_PENALTY_KINDS:
        assert torch.count_nonzero(kl_penalty(lp, lp.clone(), kind)) == 0
    ref = lp + torch.randn(1000, generator=g, dtype=torch.float64) * 3
    k3 = kl_penalty(lp, ref, "k3")
    assert (k3 >= 0).all() and (k3 > 0).sum() > 990


# ---------------------------------------------------------------------------------------------
# registries, config, total loss
# ---------------------------------------------------------------------------------------------
def test_signatures_follow_verl(core_algos):
    """Same names, argument names and argument order as verl 0.9.1's core_algos (no translation)."""
    pairs = [
        (compute_policy_loss_vanilla, core_algos.compute_policy_loss_vanilla, None),
        (kl_penalty, core_algos.kl_penalty, None),
        (agg_loss, core_algos.agg_loss, 3),  # then verl's dp_size (one process here)
    ]
    for ours, theirs, n in pairs:
        a, b = list(inspect.signature(ours).parameters), list(inspect.signature(theirs).parameters)
        assert a[:n] == b[:n], ours.__name__
    adv = list(inspect.signature(compute_grpo_advantages).parameters)
    assert adv[2:] == list(inspect.signature(core_algos.compute_grpo_outcome_advantage).parameters)[3:5]
    assert not any(name.endswith("REGISTRY") for name in vars(grpo))  # one loss, one estimator: no registries
    lp, old, adv_t, mask = _rand_batch(2)
    loss, _ = compute_policy_loss_vanilla(old, lp, adv_t, mask, config=PPOLossConfig(clip_ratio_high=0.28))
    assert loss.item() == pytest.approx(vanilla(old, lp, adv_t, mask, 0.2, 0.28)[0].item(), rel=1e-15)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("clip_ratio_low", 0.0, "0 < value < 1"),
        ("clip_ratio_high", -0.1, "> 0"),
        ("clip_ratio_c", 1.0, "> 1"),
        ("loss_agg_mode", "mean", "seq-mean-token-mean"),
        ("kl_loss_type", "k5", "low_var_kl"),
        ("kl_loss_coef", -1.0, ">= 0"),
        ("entropy_coeff", math.nan, "finite"),
    ],
)
def test_config_validate_names_field(field, value, allowed):
    PPOLossConfig().validate()
    with pytest.raises(ValueError, match=f"PPOLossConfig.{field}=.*allowed.*{allowed}"):
        PPOLossConfig(**{field: value}).validate()


def test_actor_loss_adds_kl_and_entropy():
    lp, old, adv, mask = _rand_batch(4)
    ref = lp + 0.3
    ent = torch.rand_like(lp)
    cfg = PPOLossConfig(kl_loss_coef=0.5, entropy_coeff=0.1).validate()
    loss, stats = compute_actor_loss(old, lp, adv, mask, cfg, ref_log_prob=ref, entropy=ent)
    pg = vanilla(old, lp, adv, mask)[0]
    k3 = math.exp(0.3) - 0.3 - 1  # constant per token
    want = pg.item() + 0.5 * k3 - 0.1 * agg_loss(ent, mask).item()
    assert loss.item() == pytest.approx(want, rel=1e-12)
    assert stats["kl_loss"].item() == pytest.approx(k3, rel=1e-12)


def test_default_dual_clip_bound_is_verls_3():
    """PPOLossConfig() caps a negative-advantage token's loss at -A * 3 (verl's clip_ratio_c default):
    with ratio e^2 and A = -1 the clipped PPO loss is e^2 ~ 7.39, the dual clip makes it exactly 3.
    At clip_ratio_c = 10 the same token would keep 7.39 (the control below)."""
    lp = torch.zeros(1, 2, dtype=torch.float64)
    old = lp - 2.0  # ratio e^2
    adv = torch.full((1, 2), -1.0, dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.float64)
    assert PPOLossConfig().clip_ratio_c == 3.0
    loss, _ = compute_policy_loss_vanilla(old, lp, adv, mask, "token-mean", PPOLossConfig())
    assert loss.item() == pytest.approx(3.0, abs=1e-12)
    wide, _ = compute_policy_loss_vanilla(old, lp, adv, mask, "token-mean", PPOLossConfig(clip_ratio_c=10.0))
    assert wide.item() == pytest.approx(math.exp(2.0), rel=1e-12)
