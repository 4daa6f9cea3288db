"""Soft/discrete steps, phase control (think-end, Cold Stop, after-thinking, compat) and the mixture."""

import pytest
import torch

from soft_thinking.core.config import ConfigError, SoftThinkingConfig
from soft_thinking.core.mixture import mix_embeddings
from soft_thinking.core.noise import mixture_weights
from soft_thinking.core.phase import PhaseTracker
from soft_thinking.core.plan import StepPlan, new_phase
from soft_thinking.core.sampling import SamplingTensors
from soft_thinking.core.step import decode_step, discrete_step, soft_step

V, K = 40, 5
PARAMS, OPTS = SoftThinkingConfig().noise_params(), SoftThinkingConfig().logprob_options()  # the defaults' views


def gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 100 + i) for i in range(n)]


def settings(b: int, t: float = 1.0, k: int = 5, p: float = 0.95, mp: float = 0.0) -> SamplingTensors:
    return SamplingTensors.build(b, "cpu", t, k, p, mp)


def plan(b: int, **kw) -> StepPlan:
    """A batch of ``b`` rows sharing one config (thinking: T=1, top_k=5, top_p=0.95, K=5)."""
    base = dict(think_end_token_ids=(39,), temperature=1.0, top_k=5, top_p=0.95, max_topk=K)
    return StepPlan.build([SoftThinkingConfig(**{**base, **kw})] * b)


def test_mix_embeddings_one_hot_and_k1_are_exact() -> None:
    e = torch.randn(V, 8, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[3, 9, 1], [7, 7, 2]])
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = mix_embeddings(e, ids, w)
    assert torch.equal(out[0], e[3]) and torch.equal(out[1], e[7])
    assert torch.equal(mix_embeddings(e, ids[:, :1], torch.ones(2, 1)), e[ids[:, 0]])
    for dtype in (torch.bfloat16, torch.float16):
        eh = e.to(dtype)
        assert torch.equal(mix_embeddings(eh, ids, w), eh[[3, 7]])


def test_mix_embeddings_matches_dense_float64_and_renormalizes() -> None:
    g = torch.Generator().manual_seed(1)
    e = torch.randn(V, 8, generator=g, dtype=torch.float64)
    ids = torch.randint(0, V, (4, K), generator=g)
    w = torch.rand(4, K, generator=g, dtype=torch.float64)
    dense = torch.zeros(4, V, dtype=torch.float64).scatter_add_(1, ids, w / w.sum(-1, keepdim=True))
    torch.testing.assert_close(mix_embeddings(e, ids, w * 3.0), dense @ e)


def test_soft_step_contract() -> None:
    logits = torch.randn(6, V, generator=torch.Generator().manual_seed(2)) * 3
    r = soft_step(logits, settings(6), gens(6), "gumbel", PARAMS, K, OPTS)
    assert r.soft.all()
    assert torch.equal(r.tokens, r.ids[:, 0])
    assert (r.q[:, :-1] >= r.q[:, 1:]).all()  # sorted by q (= weight), descending
    torch.testing.assert_close(r.weights, mixture_weights(r.q, "gumbel", 0.1))
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(r.entropy, -(probs * probs.log()).sum(-1))


def test_k1_soft_equals_greedy_discrete() -> None:
    logits = torch.randn(5, V, generator=torch.Generator().manual_seed(3))
    r = soft_step(logits, settings(5, k=-1, p=1.0), gens(5), "gumbel", PARAMS, 1, OPTS)
    assert torch.equal(r.tokens, logits.argmax(-1)) and (r.weights == 1).all()
    d = discrete_step(logits, settings(5, t=0.0), gens(5), K)
    assert torch.equal(d.tokens, logits.argmax(-1)) and not d.soft.any()
    assert torch.equal(d.ids[:, 1:], torch.zeros_like(d.ids[:, 1:])) and (d.q == 0).all()


def test_greedy_soft_is_noise_free_mixture() -> None:
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(4))
    r = soft_step(logits, settings(3, t=0.0, k=5, p=1.0), gens(3), "gumbel", PARAMS, K, OPTS)
    probs = torch.softmax(logits, -1)
    top = probs.topk(K)
    torch.testing.assert_close(r.weights, top.values / top.values.sum(-1, keepdim=True))
    assert torch.equal(r.tokens, logits.argmax(-1)) and (r.logprobs == 0).all()


def test_multi_token_think_end_and_discrete_think_end_step() -> None:
    """Thinking ends when the last visible tokens equal the sequence; that step is discrete."""
    b = 2
    end = (11, 12)
    ph = PhaseTracker(b, end, soft_thinking=True)
    logits = torch.full((b, V), -20.0)
    seq = [11, 5, 11, 12, 3]  # row 0 emits 11,5,11,12 -> ends at step 3; row 1 emits 3 forever
    soft_flags = []
    for t, tok in enumerate(seq):
        lg = logits.clone()
        lg[0, tok] = 20.0
        lg[1, 3] = 20.0
        r = decode_step(lg, ph, plan(b, after_thinking_top_k=1), gens(b, t))
        assert r.tokens[0].item() == tok
        soft_flags.append(bool(r.soft[0]))
    assert soft_flags == [True, True, True, False, False]
    assert ph.thinking.tolist() == [False, True]


def test_cold_stop_forces_after_exactly_n_low_entropy_steps() -> None:
    n = 3
    ph = PhaseTracker(1, (30, 31), soft_thinking=True, entropy_threshold=0.5, length_threshold=n)
    peaked = torch.full((1, V), -30.0)
    peaked[0, 4] = 30.0  # entropy ~ 0
    flat = torch.zeros(1, V)  # entropy log V
    steps = [flat, peaked, peaked, flat, peaked, peaked, peaked, peaked, peaked]
    out = []
    for t, lg in enumerate(steps):
        r = decode_step(lg, ph, plan(1), gens(1, t))
        out.append((r.tokens.item(), bool(r.soft.item())))
    # the run resets at the flat step 3; steps 4,5,6 are low-entropy -> step 6 forced to 30, step 7 to 31
    assert out[6] == (30, False) and out[7] == (31, False)
    assert all(s for _, s in out[:6]) and out[8][1] is False
    assert not ph.thinking.item() and ph.cold_stopped.item()


def test_after_thinking_settings_apply_and_compat_flag_reproduces_bug() -> None:
    b = 64
    logits = torch.randn(1, V, generator=torch.Generator().manual_seed(5)).expand(b, -1)
    kw = dict(temperature=1.0, top_k=5, top_p=1.0, after_thinking_top_k=1)
    ph = PhaseTracker(b, (39,), soft_thinking=False)  # all rows in the answer phase
    r = decode_step(logits, ph, plan(b, **kw), gens(b))
    assert (r.tokens == logits[0].argmax()).all() and not r.soft.any()  # after_thinking_top_k=1: greedy
    ph = PhaseTracker(b, (39,), soft_thinking=False)
    r = decode_step(logits, ph, plan(b, compat_stale_phase_mask=True, **kw), gens(b))
    assert r.tokens.unique().numel() > 1 and not r.soft.any()  # Gumbel-argmax over top-5 ignores top_k=1
    lp = torch.log_softmax(logits, -1).gather(-1, r.tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(r.logprobs, lp)


def test_eos_free_soft_until_eos_tracker_never_ends() -> None:
    ph = PhaseTracker(2, (), soft_thinking=True, entropy_threshold=0.0)
    lg = torch.randn(2, V)
    for t in range(3):
        r = decode_step(lg, ph, plan(2), gens(2, t))
        assert r.soft.all()
    assert ph.thinking.all()


def test_row_results_do_not_depend_on_batch_composition() -> None:
    logits = torch.randn(8, V, generator=torch.Generator().manual_seed(6)) * 2
    g_all = gens(8, 3)
    for noise in ("gumbel", "dirichlet", "gaussian"):
        full = soft_step(logits, settings(8), gens(8, 3), noise, PARAMS, K, OPTS)
        alone = soft_step(logits[5:6], settings(1), [gens(8, 3)[5]], noise, PARAMS, K, OPTS)
        assert torch.equal(full.ids[5], alone.ids[0]) and torch.equal(full.q[5], alone.q[0])
    d_full = discrete_step(logits, settings(8, k=-1, p=0.9), g_all, K)
    d_alone = discrete_step(logits[5:6], settings(1, k=-1, p=0.9), [gens(8, 3)[5]], K)
    assert d_full.tokens[5] == d_alone.tokens[0]


def test_tracker_select_drops_rows() -> None:
    ph = PhaseTracker(3, (7,), soft_thinking=True, entropy_threshold=1.0, length_threshold=2)
    ph.select(torch.tensor([0, 2]))
    assert ph.thinking.shape == (2,) and ph.window.shape == (2, 1)


# ---------------------------------------------------------------------------------------------
# per-row settings
# ---------------------------------------------------------------------------------------------
MIXED = [  # rows of one batch with different filters, noise kinds, K, tau_g and noise factors
    dict(noise="gumbel", max_topk=5, gumbel_softmax_temperature=0.1, top_k=-1, top_p=0.9),
    dict(noise="gumbel", max_topk=3, gumbel_softmax_temperature=0.5, noise_factor=0.5, top_k=8, top_p=1.0),
    dict(noise="dirichlet", max_topk=4, gumbel_softmax_temperature=1.0, top_k=-1, top_p=0.95, min_p=0.01),
    dict(noise="gaussian", max_topk=2, top_k=5, top_p=0.95, temperature=0.7),
    dict(noise="none", max_topk=5, top_k=-1, top_p=1.0, temperature=1.3),
    dict(noise="gumbel", max_topk=5, temperature=0.0),  # greedy: noise-free
    dict(noise="gumbel", max_topk=1, top_k=-1, top_p=0.9, after_thinking_temperature=0.5),
    # per-row phase settings: another think-end, no Cold Stop, discrete from the start, the compat bug
    dict(noise="gumbel", think_end_token_ids=(38, 39), early_stopping_length_threshold=3),
    dict(noise="gaussian", early_stopping_entropy_threshold=0.0, top_k=-1, top_p=1.0),
    dict(enable_soft_thinking=False, top_k=-1, top_p=0.9),
    dict(noise="gumbel", compat_stale_phase_mask=True, after_thinking_top_k=1),
]


def mixed_configs() -> list[SoftThinkingConfig]:
    base = dict(think_end_token_ids=(39,), early_stopping_entropy_threshold=0.3, early_stopping_length_threshold=2)
    return [SoftThinkingConfig(**{**base, **kw}) for kw in MIXED]


def test_plan_holds_each_rows_settings() -> None:
    cfgs = mixed_configs()
    p = StepPlan.build(cfgs)
    assert p.k == 5 and p.max_topk.tolist() == [5, 3, 4, 2, 5, 5, 1, 5, 5, 5, 5]
    assert p.noise.tolist() == [1, 1, 2, 3, 0, 0, 1, 1, 3, 0, 1]  # greedy and discrete rows draw no noise
    assert p.params.tau_g.tolist() == [c.gumbel_softmax_temperature for c in cfgs]
    assert p.think.top_k.tolist() == [-1, 8, -1, 5, -1, 5, -1, 5, -1, -1, 5]
    assert p.answer.temperature.tolist()[6] == 0.5
    assert p.answer.top_k.tolist()[-1] == 5  # compat: the answer phase keeps the thinking filters
    assert p.compat_stale_phase_mask.tolist() == [False] * 10 + [True]
    assert p.candidate_mask()[1].tolist() == [True, True, True, False, False]
    # leave and join: the rows of a concatenation are the rows of its parts
    idx = torch.tensor([6, 1, 3])
    joined = StepPlan.cat([p.rows(idx), StepPlan.build(cfgs[:2])])
    assert joined.max_topk.tolist() == [1, 3, 2, 5, 3] and joined.k == 5
    assert torch.equal(joined.params.noise_factor, torch.tensor([1.0, 0.5, 1.0, 1.0, 0.5], dtype=torch.float64))
    with pytest.raises(ConfigError, match="rows of one batch must share SoftThinkingConfig.gumbel_clamp"):
        StepPlan.build([cfgs[0], cfgs[0].replace(gumbel_clamp=None)])


@pytest.mark.parametrize("seed", [0, 1])
def test_a_row_of_a_mixed_batch_equals_the_row_alone(seed: int) -> None:
    """Per-row settings: every row of a mixed batch steps exactly as in a batch of its own,
    through thinking, Cold Stop (entropy threshold 0.3, 2 steps) and the answer phase."""
    cfgs = mixed_configs()
    b = len(cfgs)
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(b, V, generator=g) * s for s in (3.0, 8.0, 12.0, 12.0, 12.0, 2.0, 3.0, 1.0)]
    batch_plan, batch_phase = StepPlan.build(cfgs), new_phase(cfgs)
    batch_gens = gens(b, seed)
    solo = [(StepPlan.build([c]), new_phase([c]), [batch_gens_i]) for c, batch_gens_i in zip(cfgs, gens(b, seed))]
    for lg in logits:
        r = decode_step(lg, batch_phase, batch_plan, batch_gens)
        assert r.ids.shape == (b, 5)
        for i, (p, ph, gen) in enumerate(solo):
            one = decode_step(lg[i : i + 1], ph, p, gen)
            k = cfgs[i].max_topk
            assert torch.equal(r.tokens[i], one.tokens[0]) and torch.equal(r.soft[i], one.soft[0])
            assert torch.equal(r.ids[i, :k], one.ids[0]) and torch.equal(r.q[i, :k], one.q[0])
            assert torch.equal(r.weights[i, :k], one.weights[0]) and torch.equal(r.logprobs[i], one.logprobs[0])
            assert (r.ids[i, k:] == 0).all() and (r.weights[i, k:] == 0).all()  # padding adds nothing
    assert batch_phase.cold_stopped.any() and not batch_phase.thinking.all()  # both phases were exercised
    assert not batch_phase.cold_stopped[8]  # this row has no Cold Stop


def test_counter_rng_a_request_alone_equals_it_in_a_batch_of_64_with_joins_and_leaves() -> None:
    """Continuous batching on the core: 64 requests with mixed settings arrive at different steps,
    leave when their length is reached, and each one's steps equal its solo run bit for bit
    (counter-based randomness keyed by (seed, position); a toy model computed row by row)."""
    from soft_thinking.core.noise import CounterSource
    from soft_thinking.text import derive_seed

    vocab, dim = 40, 16
    g = torch.Generator().manual_seed(11)
    emb, w_out, pos_emb = torch.randn(vocab, dim, generator=g), torch.randn(dim, vocab, generator=g) * 2.5, torch.randn(128, dim, generator=g)
    cfgs = mixed_configs()
    reqs = [
        dict(cfg=cfgs[i % len(cfgs)], seed=derive_seed("test", i), prompt_len=3 + (7 * i) % 13,
             first=int(torch.randint(0, vocab, (1,), generator=g)), arrive=(5 * i) % 23, length=6 + (11 * i) % 29)
        for i in range(64)
    ]

    def logits_of(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return torch.cat([(x[r : r + 1] + pos_emb[pos[r]]) @ w_out for r in range(x.shape[0])])  # row by row

    def run(ids: list[int]) -> dict[int, list[tuple]]:
        out: dict[int, list[tuple]] = {i: [] for i in ids}
        live: list[int] = []
        plan = phase = x = seed = plen = t = None
        step = 0
        while step == 0 or live or any(reqs[i]["arrive"] >= step for i in ids):
            new = [i for i in ids if reqs[i]["arrive"] == step]
            if new:  # requests join
                p_new, ph_new = StepPlan.build([reqs[i]["cfg"] for i in new]), new_phase([reqs[i]["cfg"] for i in new])
                x_new = emb[[reqs[i]["first"] for i in new]]
                vec = (lambda key, new=new: torch.tensor([reqs[i][key] for i in new]))  # noqa: E731
                if live:
                    plan, x = StepPlan.cat([plan, p_new]), torch.cat([x, x_new])
                    phase.join(ph_new)
                    seed, plen, t = torch.cat([seed, vec("seed")]), torch.cat([plen, vec("prompt_len")]), torch.cat([t, torch.zeros(len(new), dtype=torch.int64)])
                else:
                    plan, phase, x, seed, plen, t = p_new, ph_new, x_new, vec("seed"), vec("prompt_len"), torch.zeros(len(new), dtype=torch.int64)
                live += new
            step += 1
            if not live:
                continue
            r = decode_step(logits_of(x, plen + t), phase, plan, CounterSource(seed, plen + t))
            for j, i in enumerate(live):
                k = reqs[i]["cfg"].max_topk
                out[i].append((int(r.tokens[j]), r.ids[j, :k].tolist(), r.q[j, :k].tolist(), bool(r.soft[j])))
            x = torch.cat([mix_embeddings(emb, r.ids[j : j + 1, : reqs[i]["cfg"].max_topk],
                                          r.weights[j : j + 1, : reqs[i]["cfg"].max_topk]) for j, i in enumerate(live)])
            t = t + 1
            keep = [j for j, i in enumerate(live) if len(out[i]) < reqs[i]["length"]]
            if len(keep) < len(live):  # requests leave
                sel = torch.tensor(keep, dtype=torch.int64)
                plan, x, seed, plen, t = plan.rows(sel), x[sel], seed[sel], plen[sel], t[sel]
                phase.select(sel)
                live = [live[j] for j in keep]
        return out

    together = run(list(range(64)))
    for i in (0, 5, 17, 38, 63):
        assert run([i])[i] == together[i], i
    assert max(len(v) for v in together.values()) > 20 and len({reqs[i]["arrive"] for i in range(64)}) > 10
    soft = [s for v in together.values() for (_, _, _, s) in v]
    assert any(soft) and not all(soft)
