"""Tests for the reference soft-thinking engine (soft_thinking.engines.hf.engine.SoftThinkingEngine).

Everything runs on real tiny random models from :mod:`soft_thinking.engines.hf.tiny` (char-level
tokenizer: ``<|im_end|>`` = EOS = id 2, ``</think>`` = id 5, one id per character), fp32 unless
a test says otherwise. All randomness is seeded, so every assertion is deterministic.
"""

from __future__ import annotations

import pytest
import torch

from soft_thinking.core.config import ConfigError, SoftThinkingConfig
from soft_thinking.core.mixture import replay_embeddings
from soft_thinking.core.trace import collate_traces
from soft_thinking.engines.hf.engine import (
    EngineError,
    Sample,
    SoftThinkingEngine,
    resolve_think_end,
    sample_seed,
)
from soft_thinking.engines.hf.replay import replay_logits, replay_logprobs
from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer

THINK_END_ID = 5
EOS_ID = 2
PROMPTS = ["What is 2+3?", "hi", "Compute 12*7 step by step.", "abc"]
OPTS = SoftThinkingConfig().logprob_options()  # the paper's estimator


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention
    yield
    torch.set_num_threads(old)


def make_engine(arch: str = "qwen2", dtype: torch.dtype | None = None, **model_kw) -> SoftThinkingEngine:
    model, tok = tiny_model_and_tokenizer(arch, **model_kw)
    return SoftThinkingEngine(model, tok, dtype=dtype)


def soft_cfg(**kw) -> SoftThinkingConfig:
    base = dict(think_end_token_ids=(THINK_END_ID,), temperature=1.0, top_p=0.95, top_k=5, max_topk=5)
    base.update(kw)
    return SoftThinkingConfig(**base)


def discrete_cfg(**kw) -> SoftThinkingConfig:
    base = dict(enable_soft_thinking=False, temperature=1.0, top_p=0.9, top_k=-1)
    base.update(kw)
    return SoftThinkingConfig(**base)


def parity_delta(engine: SoftThinkingEngine, samples: list[Sample]) -> float:
    """max |rollout log-prob - replayed log-prob| over the response mask."""
    lp, batch = replay_logprobs(
        engine.model, [s.prompt_ids for s in samples], [s.trace for s in samples], OPTS, pad_id=engine.pad_id
    )
    return float((lp.detach() - batch.logprobs).abs()[batch.mask].max())


# --------------------------------------------------------------------------------- K = 1 greedy


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
@pytest.mark.parametrize("tied", [True, False])
def test_k1_soft_loop_equals_greedy_discrete(arch: str, tied: bool) -> None:
    engine = make_engine(arch, tie_word_embeddings=tied)
    # K=1: the single candidate is the argmax whatever the Gumbel noise, and the mixture is E[argmax];
    # the answer phase is made greedy too, so the whole sequence must be the greedy decode.
    soft = engine.generate(PROMPTS, soft_cfg(max_topk=1, after_thinking_top_k=1), max_new_tokens=40, seed=3)
    greedy = engine.generate(PROMPTS, discrete_cfg(temperature=0.0), max_new_tokens=40, seed=11)
    for s, g in zip(soft, greedy):
        assert s.token_ids == g.token_ids
        assert s.finish_reason == g.finish_reason
        # the soft run really took soft steps until its think-end (or the end)
        assert bool(s.trace.soft[: max(s.trace.answer_start - 1, 0)].all())
        assert s.trace.soft.any()
        assert not g.trace.soft.any()
    # and greedy discrete agrees with transformers' own greedy decoding (single prompt: no padding)
    ids = torch.tensor([engine.encode_prompts(PROMPTS[:1])[0]])
    ref = engine.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=40,
                                eos_token_id=EOS_ID, pad_token_id=0)
    assert ref[0, ids.shape[1]:].tolist()[: len(greedy[0].token_ids)] == greedy[0].token_ids


# --------------------------------------------------------------------------------- batch invariance


@pytest.mark.parametrize("mode", ["gumbel", "discrete"])
def test_sample_alone_equals_sample_in_batch_of_8(mode: str) -> None:
    engine = make_engine("qwen2")
    cfg = soft_cfg(top_p=0.9, top_k=-1) if mode == "gumbel" else discrete_cfg()
    prompts = PROMPTS + ["x", "Let's think.", "1+1=", "Why is the sky blue?"]  # 8 rows, varied padding
    batch = engine.generate(prompts, cfg, n=1, max_new_tokens=48, seed=7)
    assert len(batch) == 8
    for i in (0, 1, 5):
        alone = engine.generate([prompts[i]], cfg, n=1, max_new_tokens=48, seed=7, prompt_offset=i)[0]
        b = batch[i]
        assert alone.token_ids == b.token_ids
        assert torch.equal(alone.trace.ids, b.trace.ids)
        assert torch.equal(alone.trace.soft, b.trace.soft)
        torch.testing.assert_close(alone.trace.q, b.trace.q, rtol=0, atol=1e-5)
        assert alone.finish_reason == b.finish_reason
    # a different prompt index gives a different sample (the offset matters)
    other = engine.generate([prompts[0]], cfg, n=1, max_new_tokens=48, seed=7, prompt_offset=1)[0]
    assert other.token_ids != batch[0].token_ids
    # chunked generation (batch_size) gives the same samples as one batch
    chunked = engine.generate(prompts, cfg, n=1, max_new_tokens=48, seed=7, batch_size=3)
    assert [s.token_ids for s in chunked] == [s.token_ids for s in batch]


def test_per_prompt_configs_give_each_prompt_its_own_samples() -> None:
    """Rows of one batch with different filters, noise kinds, K, tau_g and noise factors: each
    prompt's samples equal those of a call with that prompt and config alone."""
    engine = make_engine("qwen2")
    cfgs = [
        soft_cfg(top_k=-1, top_p=0.9),
        soft_cfg(max_topk=3, gumbel_softmax_temperature=0.5, noise_factor=0.5, top_k=8, top_p=1.0),
        soft_cfg(noise="dirichlet", gumbel_softmax_temperature=1.0, max_topk=4),
        soft_cfg(noise="none", temperature=0.7, after_thinking_temperature=0.3, max_topk=2),
    ]
    batch = engine.generate(PROMPTS, cfgs, n=2, max_new_tokens=40, seed=7)
    for i, cfg in enumerate(cfgs):
        alone = engine.generate([PROMPTS[i]], cfg, n=2, max_new_tokens=40, seed=7, prompt_offset=i)
        for a, b in zip(alone, batch[2 * i : 2 * i + 2]):
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
            assert a.trace.K == b.trace.K == cfg.max_topk
            assert torch.equal(a.trace.ids, b.trace.ids) and torch.equal(a.trace.soft, b.trace.soft)
            torch.testing.assert_close(a.trace.q, b.trace.q, rtol=0, atol=1e-5)  # batched float32 logits
            assert a.trace.answer_start == b.trace.answer_start
            assert (b.trace.noise, b.trace.tau_g) == (cfg.noise, cfg.gumbel_softmax_temperature)
    with pytest.raises(EngineError, match="one per prompt"):
        engine.generate(PROMPTS, cfgs[:2], max_new_tokens=4)
    with pytest.raises(ConfigError, match="rows of one batch must share SoftThinkingConfig.gumbel_clamp"):
        engine.generate(PROMPTS[:2], [cfgs[0], cfgs[0].replace(gumbel_clamp=None)], max_new_tokens=4)


def test_counter_rng_sample_alone_equals_it_in_a_batch_of_64() -> None:
    """Counter-based randomness: a sample is the same alone and in a batch of 64 rows with mixed
    prompts and settings, where rows leave at EOS and at their context limit mid-way."""
    engine = make_engine("qwen2")
    prompts = [("abc" * (1 + i % 7))[: 2 + (5 * i) % 17] + str(i) for i in range(64)]
    cfgs = [soft_cfg(top_k=-1, top_p=0.9), soft_cfg(max_topk=3, noise_factor=0.5),
            soft_cfg(noise="gaussian", gumbel_softmax_temperature=1.0), discrete_cfg(top_p=0.95)]
    configs = [cfgs[i % 4] for i in range(64)]
    batch = engine.generate(prompts, configs, n=1, max_new_tokens=48, seed=3)
    lengths = {len(s.token_ids) for s in batch}
    assert len(lengths) > 3 and {s.finish_reason for s in batch} >= {"eos", "length"}  # rows left mid-way
    for i in (0, 9, 22, 35, 63):
        alone = engine.generate([prompts[i]], configs[i], n=1, max_new_tokens=48, seed=3, prompt_offset=i)[0]
        b = batch[i]
        assert alone.token_ids == b.token_ids and alone.finish_reason == b.finish_reason
        assert torch.equal(alone.trace.ids, b.trace.ids) and torch.equal(alone.trace.soft, b.trace.soft)
        torch.testing.assert_close(alone.trace.q, b.trace.q, rtol=0, atol=1e-5)  # batched float32 logits


def test_sample_seed_depends_on_every_key() -> None:
    base = sample_seed(0, 1, 2)
    assert base == sample_seed(0, 1, 2)
    assert len({base, sample_seed(1, 1, 2), sample_seed(0, 2, 2), sample_seed(0, 1, 3), sample_seed(0, 2, 1)}) == 5
    assert 0 <= base < 2**63


# --------------------------------------------------------------------------------- phase switching


def test_thinking_ends_at_the_think_end_token() -> None:
    engine = make_engine("qwen2")
    samples = engine.generate(PROMPTS, soft_cfg(top_k=-1, top_p=1.0), n=6, max_new_tokens=80, seed=0)
    ended = [s for s in samples if s.trace.answer_start < len(s.trace)]
    assert ended, "no sample emitted </think>; pick another seed"
    for s in ended:
        a = s.trace.answer_start
        assert s.token_ids[a - 1] == THINK_END_ID
        assert THINK_END_ID not in s.token_ids[: a - 1]  # it ended at the first one
        assert bool(s.trace.soft[: a - 1].all()) and not bool(s.trace.soft[a - 1 :].any())
        assert s.num_thinking_tokens == a
        assert not s.cold_stopped
        body = s.token_ids[:-1] if s.finish_reason == "eos" else s.token_ids
        assert s.thinking_text == engine.tokenizer.decode(body[: a - 1])
        assert s.answer_text == engine.tokenizer.decode(body[a:])
    for s in samples:
        if s.trace.answer_start == len(s.trace):  # never ended: all steps soft (bar a final EOS)
            assert THINK_END_ID not in s.token_ids
            assert bool(s.trace.soft.all())
            assert s.answer_text == ""


def test_multi_token_think_end_sequence() -> None:
    engine = make_engine("qwen2")
    cfg1 = soft_cfg(top_k=-1, top_p=1.0)
    probe = engine.generate(["Think about it."], cfg1, n=4, max_new_tokens=30, seed=1)
    # choose a 2-token think-end that first occurs at steps (10, 11) of a sample that never hit </think>
    pick = None
    for s in probe:
        toks = s.token_ids
        if len(toks) > 20 and THINK_END_ID not in toks[:12] and EOS_ID not in toks[:12]:
            pair = (toks[10], toks[11])
            if all((toks[i], toks[i + 1]) != pair for i in range(10)):
                pick = (s.sample_index, pair, toks)
                break
    assert pick is not None
    si, pair, toks = pick
    cfg2 = soft_cfg(top_k=-1, top_p=1.0, think_end_token_ids=pair)
    s = engine.generate(["Think about it."], cfg2, n=4, max_new_tokens=30, seed=1)[si]
    assert s.token_ids[:12] == toks[:12]  # identical up to the think-end (config does not perturb draws)
    assert s.trace.answer_start == 12
    soft = s.trace.soft.tolist()
    assert soft[:11] == [True] * 11  # the first piece is still a soft step
    assert not any(soft[11:])  # the completing step and everything after are discrete
    assert s.thinking_text == engine.tokenizer.decode(toks[:10])
    body = s.token_ids[:-1] if s.finish_reason == "eos" else s.token_ids
    assert s.answer_text == engine.tokenizer.decode(body[12:])
    assert not s.cold_stopped


@pytest.mark.parametrize("n_low", [1, 4])
@pytest.mark.parametrize("end_text", ["</think>", "END"])
def test_cold_stop_forces_think_end_after_n_low_entropy_steps(n_low: int, end_text: str) -> None:
    engine = make_engine("qwen2")
    end_ids = resolve_think_end(engine.tokenizer, end_text)
    assert len(end_ids) == (1 if end_text == "</think>" else 3)
    cfg = soft_cfg(
        think_end_token_ids=end_ids,
        early_stopping_entropy_threshold=100.0,  # every step is "low entropy"
        early_stopping_length_threshold=n_low,
    )
    samples = engine.generate(PROMPTS[:2], cfg, n=2, max_new_tokens=20, seed=5)
    m = len(end_ids)
    for s in samples:
        assert s.cold_stopped
        first = n_low - 1
        assert s.token_ids[first : first + m] == list(end_ids)
        assert s.trace.answer_start == first + m
        assert s.trace.soft.tolist() == [True] * first + [False] * (len(s.trace) - first)
        assert s.thinking_text == engine.tokenizer.decode(s.token_ids[:first])
        body = s.token_ids[:-1] if s.finish_reason == "eos" else s.token_ids
        assert s.answer_text == engine.tokenizer.decode(body[first + m :])
        # forced steps are stored as discrete steps of their token
        for t in range(first, first + m):
            assert int(s.trace.ids[t, 0]) == end_ids[t - first] and not s.trace.ids[t, 1:].any()
            assert not s.trace.q[t].any()
    # Cold Stop off: same seed, nothing forced
    off = engine.generate(PROMPTS[:2], cfg.replace(early_stopping_entropy_threshold=0.0), n=2, max_new_tokens=20, seed=5)
    assert not any(s.cold_stopped for s in off)
    # draws before the forced step are unaffected by Cold Stop
    for s, o in zip(samples, off):
        assert s.token_ids[: n_low - 1] == o.token_ids[: n_low - 1]


def _border_think_end_case(engine: SoftThinkingEngine) -> tuple[Sample, int, int, torch.Tensor]:
    """A think-end ``(t, t)`` whose first piece the model emits naturally at step N-2 before Cold Stop
    forces ``t`` at step N-1, so the forced piece completes the sequence at step N-1.

    Searched over seeds for a case where the greedy answer token at step N is not ``t`` (the logits
    predicting step N depend only on steps < N, so they are the same with or without the bug).
    """
    n_low = 6
    base = soft_cfg(after_thinking_top_k=1)
    for seed in range(20):
        probe = engine.generate(["hello"], base, n=8, max_new_tokens=12, seed=seed)
        for s in probe:
            toks = s.token_ids
            t = toks[n_low - 2]
            if THINK_END_ID in toks[:n_low] or EOS_ID in toks[: n_low + 1] or len(toks) < n_low + 2:
                continue
            if toks[n_low - 3] == t or any(toks[i] == t == toks[i + 1] for i in range(n_low - 2)):
                continue
            cfg = base.replace(
                think_end_token_ids=(t, t), early_stopping_entropy_threshold=100.0,
                early_stopping_length_threshold=n_low,
            )
            out = engine.generate(["hello"], cfg, n=8, max_new_tokens=12, seed=seed)[s.sample_index]
            batch = collate_traces([out.trace])
            logits = replay_logits(engine.model, [out.prompt_ids], batch, pad_id=engine.pad_id)[0]
            if int(logits[n_low].argmax()) != t:
                return out, n_low, t, logits
    raise AssertionError("no suitable probe sample")


def test_cold_stop_stops_forcing_once_thinking_ended() -> None:
    engine = make_engine("qwen2", tie_word_embeddings=False)  # tied random models just repeat the last token
    s, n_low, t, logits = _border_think_end_case(engine)
    assert s.cold_stopped
    assert s.token_ids[n_low - 2 : n_low] == [t, t]
    assert s.trace.answer_start == n_low  # step N-1 (forced t) completed (t, t)
    # step N is an answer step: greedy (after_thinking_top_k=1), not a further forced think-end piece
    assert s.token_ids[n_low] == int(logits[n_low].argmax())


def test_after_thinking_settings_apply_to_the_answer_phase() -> None:
    engine = make_engine("qwen2")
    n_low = 8
    cfg = soft_cfg(
        top_k=-1, top_p=1.0, after_thinking_top_k=1,
        early_stopping_entropy_threshold=100.0, early_stopping_length_threshold=n_low,
    )
    samples = engine.generate(PROMPTS[:2], cfg, n=4, max_new_tokens=30, seed=4)
    batch = collate_traces([s.trace for s in samples])
    logits = replay_logits(engine.model, [s.prompt_ids for s in samples], batch, pad_id=engine.pad_id)
    n_answer = 0
    for b, s in enumerate(samples):
        a = s.trace.answer_start
        assert a == n_low
        for t in range(a, len(s.trace)):
            assert s.token_ids[t] == int(logits[b, t].argmax()), (b, t)
            n_answer += 1
    assert n_answer >= 8 * 10
    # thinking stays random: the 4 samples of each prompt do not share their thinking tokens
    for p in range(2):
        thinking = {tuple(s.token_ids[: n_low - 1]) for s in samples[4 * p : 4 * p + 4]}
        assert len(thinking) == 4
    # with the original's stale phase mask the answer ignores after_thinking_top_k: not all greedy
    stale = engine.generate(PROMPTS[:2], cfg.replace(compat_stale_phase_mask=True), n=4, max_new_tokens=30, seed=4)
    sb = collate_traces([s.trace for s in stale])
    sl = replay_logits(engine.model, [s.prompt_ids for s in stale], sb, pad_id=engine.pad_id)
    mismatches = sum(
        s.token_ids[t] != int(sl[b, t].argmax()) for b, s in enumerate(stale) for t in range(n_low, len(s.trace))
    )
    assert mismatches > 0


def test_eos_during_thinking_ends_the_sample() -> None:
    engine = make_engine("qwen2")
    cfg = soft_cfg(think_end_token_ids=(), soft_until_eos=True, top_k=-1, top_p=1.0)
    samples = engine.generate(PROMPTS[:2], cfg, n=8, max_new_tokens=300, seed=0)
    eos = [s for s in samples if s.finish_reason == "eos"]
    assert eos, "no sample hit EOS; pick another seed"
    for s in eos:
        assert s.token_ids[-1] == EOS_ID
        assert EOS_ID not in s.token_ids[:-1]
        assert bool(s.trace.soft[-1]) and bool(s.trace.soft.all())
        assert s.trace.answer_start == len(s.trace)
        assert s.answer_text == "" and s.thinking_text == s.text
        assert s.text == engine.tokenizer.decode(s.token_ids[:-1])
    assert all(s.finish_reason in ("eos", "length") for s in samples)


# --------------------------------------------------------------------------------- trace


@pytest.mark.parametrize("noise", ["gumbel", "dirichlet"])
def test_trace_rebuilds_the_inputs_the_engine_fed(noise: str) -> None:
    engine = make_engine("qwen2")
    captured: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            captured.append(kwargs["inputs_embeds"].detach().clone())

    cfg = soft_cfg(noise=noise, gumbel_softmax_temperature=0.1 if noise == "gumbel" else 1.0,
                   early_stopping_entropy_threshold=100.0, early_stopping_length_threshold=12)
    handle = engine.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        samples = engine.generate(PROMPTS[:3], cfg, n=2, max_new_tokens=25, seed=9)
    finally:
        handle.remove()
    lengths = [len(s.trace) for s in samples]
    for s in samples:
        assert len(s.trace) == s.num_tokens == len(s.token_ids)
        assert s.trace.tokens.tolist() == s.token_ids
        a, n = s.trace.answer_start, len(s.trace)
        expected = [True] * n if a == n else [True] * (a - 1) + [False] * (n - a + 1)  # a == n: never ended
        assert s.trace.soft.tolist() == expected
        assert int(s.trace.n_kept.min()) >= 1
    assert len(captured) == max(lengths) - 1  # one decode forward per step except the last
    E = engine.model.get_input_embeddings().weight
    n_checked = 0
    for t, x in enumerate(captured):
        rows = [r for r, n in enumerate(lengths) if n > t + 1]  # rows still alive after step t
        assert x.shape[:2] == (len(rows), 1)
        for j, r in enumerate(rows):
            tr = samples[r].trace
            e = replay_embeddings(E, tr.ids[t].long(), tr.q[t], tr.soft[t], tr.noise, tr.tau_g)
            assert float((e - x[j, 0]).abs().max()) <= 1e-6, (t, r)
            n_checked += 1
    assert n_checked >= 6 * 20


# --------------------------------------------------------------------------------- replay parity


@pytest.mark.parametrize("noise", ["gumbel", "dirichlet", "gaussian", "discrete"])
def test_replay_parity_fp32(noise: str) -> None:
    engine = make_engine("qwen2")
    if noise == "discrete":
        cfg = discrete_cfg(temperature=0.8)
    else:
        cfg = soft_cfg(
            noise=noise, temperature=0.8, after_thinking_temperature=0.6,
            gumbel_softmax_temperature=0.1 if noise == "gumbel" else 1.0,
            early_stopping_entropy_threshold=100.0, early_stopping_length_threshold=16,
        )
    samples = engine.generate(PROMPTS[:3], cfg, n=2, max_new_tokens=30, seed=13)
    if noise != "discrete":
        assert sum(s.trace.soft.all() for s in samples) < len(samples)  # answer steps are replayed too
        assert all(s.trace.soft.any() for s in samples)
    assert parity_delta(engine, samples) <= 1e-5
    # the check has teeth: a perturbed model breaks parity
    with torch.no_grad():
        engine.model.get_input_embeddings().weight.mul_(1.01)
    assert parity_delta(engine, samples) > 1e-3


# --------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine("qwen2", max_position_embeddings=32)
    cfg = soft_cfg()
    with pytest.raises(EngineError, match="list is empty"):
        engine.generate([], cfg)
    with pytest.raises(EngineError, match=r"prompts\[0\] is empty"):
        engine.generate([""], cfg)
    with pytest.raises(EngineError, match=r"prompts\[1\].*longer than the model's context"):
        engine.generate(["ok", "x" * 40], cfg)
    with pytest.raises(ConfigError, match=r"max_topk=200.*vocabulary size \(103\)"):
        engine.generate(["ok"], cfg.replace(max_topk=200))
    for tau in (0.0, -0.5):
        with pytest.raises(ConfigError, match="gumbel_softmax_temperature"):
            engine.generate(["ok"], cfg.replace(gumbel_softmax_temperature=tau))
    with pytest.raises(ConfigError, match="think_end_token_ids"):
        engine.generate(["ok"], cfg.replace(think_end_token_ids=()))
    with pytest.raises(EngineError, match="n=0"):
        engine.generate(["ok"], cfg, n=0)
    model, tok = tiny_model_and_tokenizer("llama")
    monkeypatch.setattr(model, "get_input_embeddings", lambda: None)
    with pytest.raises(EngineError, match="no input embeddings"):
        SoftThinkingEngine(model, tok)


def test_prompt_near_context_limit_finishes_with_context() -> None:
    """A 28-token prompt in a 32-position model stops after 4 tokens with finish_reason "context"
    (EOS is made unreachable, so every assert runs whatever the tiny model samples)."""
    engine = make_engine("qwen2", max_position_embeddings=32)
    engine.eos_ids = {engine.vocab_size + 1}  # an id the model cannot emit: no early EOS
    cfg = soft_cfg(soft_until_eos=True, think_end_token_ids=())
    s = engine.generate(["y" * 28], cfg, max_new_tokens=50, seed=0)[0]
    assert s.finish_reason == "context" and s.num_tokens == 4
    short = engine.generate(["y" * 28], cfg, max_new_tokens=3, seed=0)[0]
    assert short.finish_reason == "length" and short.num_tokens == 3


# --------------------------------------------------------------------------------- bf16

#: bf16 replay parity bound. Measured max |delta log pi| (incremental KV-cached decode vs one full
#: forward, bf16 on CPU, torch 2.13): gumbel 0.0026-0.0076, discrete 0.0019-0.0039 over seeds 0-3, 21.
BF16_PARITY_BOUND = 0.02


@pytest.mark.parametrize("noise", ["gumbel", "discrete"])
def test_bf16_smoke_and_parity(noise: str) -> None:
    engine = make_engine("qwen2", dtype=torch.bfloat16)
    assert engine.model.get_input_embeddings().weight.dtype == torch.bfloat16
    cfg = discrete_cfg() if noise == "discrete" else soft_cfg(early_stopping_entropy_threshold=100.0,
                                                             early_stopping_length_threshold=16)
    samples = engine.generate(PROMPTS[:3], cfg, n=2, max_new_tokens=30, seed=21)
    for s in samples:
        assert s.trace.logprobs.dtype == torch.float32
        assert bool(torch.isfinite(s.trace.logprobs).all())
    delta = parity_delta(engine, samples)
    assert delta <= BF16_PARITY_BOUND


# --------------------------------------------------------------------------------- stop / length


@pytest.mark.parametrize("mode", ["soft", "discrete"])
def test_stop_string_and_max_new_tokens(mode: str) -> None:
    engine = make_engine("qwen2")
    cfg = soft_cfg(soft_until_eos=True, think_end_token_ids=()) if mode == "soft" else discrete_cfg()
    free = engine.generate(["Tell me."], cfg, n=3, max_new_tokens=24, seed=8)
    for s in free:
        if s.finish_reason != "eos":
            assert s.finish_reason == "length" and s.num_tokens == 24
    s0 = next(s for s in free if s.finish_reason == "length")
    stop = engine.tokenizer.decode(s0.token_ids[8:10])
    # the sample must end at the first token whose text completes the stop string
    end = next(k for k in range(1, 25) if stop in engine.tokenizer.decode(s0.token_ids[:k]))
    assert end <= 10
    stopped = engine.generate(["Tell me."], cfg, n=3, max_new_tokens=24, seed=8, stop=[stop, "NEVER@@"])
    s1 = stopped[s0.sample_index]
    assert s1.finish_reason == "stop"
    assert s1.token_ids == s0.token_ids[:end]
    assert s1.text.endswith(stop)


def test_float64_model_runs_and_replays_to_float32_storage_precision() -> None:
    """A float64 model (useful to tell numerics from bugs) rolls out and replays; the only gap left
    is the float32 storage of the trace's log-probs."""
    from soft_thinking.engines.hf.replay import replay_logprobs

    engine = make_engine("qwen2", dtype=torch.float64)
    samples = engine.generate(["Compute 12+34."] * 2, soft_cfg(), n=3, max_new_tokens=20, seed=4)
    with torch.no_grad():
        lp, batch = replay_logprobs(engine.model, [s.prompt_ids for s in samples], [s.trace for s in samples],
                                    OPTS, pad_id=engine.pad_id)
    assert lp.dtype == torch.float64
    gap = ((lp - batch.logprobs.double()).abs() * batch.mask).max().item()
    assert gap <= 1e-6


# --------------------------------------------------------------------------------- the step


def _traces_equal(a: Sample, b: Sample) -> None:
    assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
    for name in ("ids", "q", "soft", "logprobs", "n_kept"):
        assert torch.equal(getattr(a.trace, name), getattr(b.trace, name)), name
    assert a.trace.answer_start == b.trace.answer_start


def test_batched_step_equals_the_decode_step_path_bit_for_bit() -> None:
    """The engine's default step (core.batch.sample_step) and the original decode_step path give the
    same samples, bit for bit: mixed kinds, K, greedy rows, Cold Stop, answer phase, rows leaving."""
    model, tok = tiny_model_and_tokenizer("qwen2")
    batched, legacy = SoftThinkingEngine(model, tok), SoftThinkingEngine(model, tok, step="decode_step")
    cfgs = [soft_cfg(top_k=-1, top_p=0.9, early_stopping_entropy_threshold=5.0, early_stopping_length_threshold=3),
            soft_cfg(max_topk=3, noise="dirichlet", after_thinking_temperature=0.0),
            soft_cfg(noise="gaussian", temperature=0.0), discrete_cfg(top_p=0.95, min_p=0.05)]
    prompts = [("abc" * (1 + i % 7))[: 2 + (5 * i) % 17] + str(i) for i in range(16)]
    configs = [cfgs[i % 4] for i in range(16)]
    got = batched.generate(prompts, configs, max_new_tokens=48, seed=3)
    ref = legacy.generate(prompts, configs, max_new_tokens=48, seed=3)
    for a, b in zip(got, ref):
        _traces_equal(a, b)
    assert len({len(s.token_ids) for s in got}) > 1  # rows left mid-way
    assert any(s.trace.soft.any() and not s.trace.soft.all() for s in got)  # both phases
    with pytest.raises(EngineError, match=r"step='fast'.*allowed \('batched', 'decode_step'\)"):
        SoftThinkingEngine(model, tok, step="fast")


def test_step_width_fallback_recomputes_truncated_rows_exactly() -> None:
    """Answer rows whose nucleus does not fit the 1024-wide prefix are redone at the full vocabulary:
    the result equals decode_step (which sorts the whole vocabulary for them)."""
    from soft_thinking.core.batch import sample_step
    from soft_thinking.core.noise import CounterSource
    from soft_thinking.core.plan import StepPlan, new_phase
    from soft_thinking.core.step import decode_step
    from soft_thinking.engines.hf.engine import BatchStepper

    v, b = 3000, 6
    cfgs = [soft_cfg(think_end_token_ids=(5,), after_thinking_top_k=-1, after_thinking_top_p=1.0,
                     after_thinking_temperature=1.0)] * b
    plan = StepPlan.build(cfgs)
    stepper = BatchStepper(plan, v)
    assert [s.width for s in stepper.specs] == [1024, v]
    phase, tracker = new_phase(cfgs), new_phase(cfgs)
    g = torch.Generator().manual_seed(0)
    seed, pos = torch.arange(b) + 11, torch.arange(b) + 20
    for t in range(3):
        logits = torch.randn(b, v, generator=g) * 0.1  # flat: the nucleus spans most of the vocabulary
        logits[:, 5] += 30 if t == 0 else 0  # every row ends thinking at step 0, then answers
        got = stepper(logits, phase, seed, pos + t)
        ref = decode_step(logits, tracker, plan, CounterSource(seed, pos + t))
        assert torch.equal(got.tokens, ref.tokens) and torch.equal(got.logprobs, ref.logprobs)
        assert not got.truncated.any()
    # negative control: the 1024-wide spec alone flags these answer rows (so the fallback really ran)
    flagged, _ = sample_step(logits, phase.state, stepper.rows, seed, pos, stepper.specs[0])
    assert flagged.answer.all() and flagged.truncated.all()


@pytest.mark.slow
def test_compiled_step_matches_eager_and_compiles_once_per_bucket() -> None:
    """compile_step=True: the same tokens as the eager step (floats within inductor's reordering),
    rows leaving the batch stay in one bucket (8): one graph."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counters: count this test's graphs only
    model, tok = tiny_model_and_tokenizer("qwen2")
    eager, compiled = SoftThinkingEngine(model, tok), SoftThinkingEngine(model, tok, compile_step=True)
    cfg = soft_cfg(top_k=-1, top_p=0.9)
    prompts = [("abc" * (1 + i % 7))[: 2 + (5 * i) % 17] + str(i) for i in range(8)]
    ref = eager.generate(prompts, cfg, max_new_tokens=48, seed=2)
    got = compiled.generate(prompts, cfg, max_new_tokens=48, seed=2)
    assert len({len(s.token_ids) for s in ref}) > 1  # a row left at EOS: batch 8 then 7, both bucket 8
    for a, b in zip(got, ref):
        assert a.token_ids == b.token_ids and torch.equal(a.trace.ids, b.trace.ids)
        torch.testing.assert_close(a.trace.q, b.trace.q, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.trace.logprobs, b.trace.logprobs, rtol=0, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    with pytest.raises(EngineError, match="compile_step=True needs step='batched'"):
        SoftThinkingEngine(model, tok, step="decode_step", compile_step=True)
