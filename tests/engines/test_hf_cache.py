"""The HF engine's preallocated KV cache (soft_thinking.engines.hf.cache): the same numbers as
transformers' DynamicCache, without the per-step concatenation."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.hf.cache import PreallocatedLayer, preallocated_cache
from soft_thinking.engines.hf.engine import EngineError, SoftThinkingEngine
from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _decode(model, cache, steps: int = 6, drop_at: int = 3) -> list[torch.Tensor]:
    """Prefill 5 rows, decode ``steps`` tokens greedily; rows 1 and 3 leave the batch at ``drop_at``."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 60, (5, 7), generator=g)
    attn = torch.ones_like(ids)
    attn[0, :2] = 0  # left padding of one row
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True)
    logits, nxt = [out.logits[:, -1]], pos[:, -1] + 1
    for t in range(steps):
        tok = logits[-1].argmax(-1, keepdim=True)
        if t == drop_at:
            keep = torch.tensor([0, 2, 4])
            cache.batch_select_indices(keep)
            tok, attn, nxt = tok[keep], attn[keep], nxt[keep]
        attn = torch.cat([attn, torch.ones(len(tok), 1, dtype=attn.dtype)], 1)
        out = model(input_ids=tok, attention_mask=attn, position_ids=nxt[:, None], past_key_values=cache, use_cache=True)
        logits.append(out.logits[:, -1])
        nxt = nxt + 1
    return logits


@torch.no_grad()
@pytest.mark.parametrize("capacity", [13, 4])  # room for every step; too small (grows mid-run)
def test_preallocated_cache_gives_dynamic_cache_logits_bit_for_bit(capacity: int) -> None:
    model, _ = tiny_model_and_tokenizer("qwen2", seed=3)
    model.eval()
    ref = _decode(model, DynamicCache(config=model.config))
    cache = preallocated_cache(model.config, capacity)
    assert cache.layers and all(type(layer) is PreallocatedLayer for layer in cache.layers)
    got = _decode(model, cache)
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert torch.equal(a, b)
    assert cache.get_seq_length() == 7 + 6
    # negative control: a changed cached key of row 0 (written through the view) changes row 0 only
    bad = preallocated_cache(model.config, capacity)
    _decode(model, bad, steps=1)
    bad.layers[0].keys[0, :, -1] += 0.5
    ok = preallocated_cache(model.config, capacity)
    _decode(model, ok, steps=1)
    tok = torch.full((5, 1), 11)
    attn = torch.ones(5, 9, dtype=torch.int64)
    attn[0, :2] = 0
    pos = torch.full((5, 1), 8)
    pos[0] = 6
    a = model(input_ids=tok, attention_mask=attn, position_ids=pos, past_key_values=bad, use_cache=True).logits
    b = model(input_ids=tok, attention_mask=attn, position_ids=pos, past_key_values=ok, use_cache=True).logits
    assert not torch.equal(a[0], b[0]) and torch.equal(a[1:], b[1:])


@torch.no_grad()
def test_the_buffers_are_written_in_place_when_the_capacity_suffices() -> None:
    model, _ = tiny_model_and_tokenizer("qwen2", seed=3)
    cache = preallocated_cache(model.config, 13)
    _decode(model, cache, steps=2, drop_at=99)
    layer = cache.layers[0]
    ptr = layer._kbuf.data_ptr()
    _decode_more = model(input_ids=torch.full((5, 1), 11), attention_mask=torch.ones(5, 10, dtype=torch.int64),
                         position_ids=torch.full((5, 1), 9), past_key_values=cache, use_cache=True)
    assert _decode_more.logits.shape[0] == 5
    assert layer._kbuf.data_ptr() == ptr and layer._kbuf.shape[-2] == 13  # no copy, no new allocation
    assert layer.keys.shape[-2] == 10 and layer.keys.data_ptr() == ptr  # a view of the buffer


@pytest.mark.parametrize("soft", [False, True])
def test_engine_samples_are_identical_with_either_cache(soft: bool) -> None:
    model, tok = tiny_model_and_tokenizer("qwen2", seed=1)
    cfg = SoftThinkingConfig(enable_soft_thinking=soft, think_end_token_ids=(5,), temperature=1.0, top_p=0.95,
                             top_k=5, max_topk=5)
    prompts = ["What is 2+3?", "hi", "Compute 12*7 step by step.", "abc"]
    runs = [SoftThinkingEngine(model, tok, kv_cache=kv).generate(prompts, cfg, n=4, max_new_tokens=24, seed=5)
            for kv in ("dynamic", "preallocated")]
    assert {s.finish_reason for s in runs[0]} == {"eos", "length"}  # rows leave the batch mid-run
    for a, b in zip(*runs):
        assert a.text == b.text and a.trace.logprobs.tolist() == b.trace.logprobs.tolist()
        assert torch.equal(a.trace.q, b.trace.q)


def test_unknown_kv_cache_is_an_error_naming_the_choices() -> None:
    model, tok = tiny_model_and_tokenizer("qwen2")
    with pytest.raises(EngineError, match=r"kv_cache='static': allowed \('preallocated', 'dynamic'\)"):
        SoftThinkingEngine(model, tok, kv_cache="static")
