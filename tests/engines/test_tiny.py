"""Tests for soft_thinking.engines.hf.tiny: char tokenizer, tiny models, cached incremental decoding."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from soft_thinking.engines.hf.tiny import (
    ARCHS,
    DEFAULT_ALPHABET,
    build_char_tokenizer,
    tiny_model,
    tiny_model_and_tokenizer,
)


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


# ---------------------------------------------------------------- tokenizer


def test_char_tokenizer_round_trips_whole_alphabet(tok):
    text = DEFAULT_ALPHABET + "Compute 12+34-5*(6)=?\n"
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) == len(text)  # one id per character, newline included
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids


def test_markers_are_single_tokens_and_survive_decode(tok):
    text = "<|im_start|>assistant\n<think>1+2=3\n</think>\\boxed{3}<|im_end|>"
    ids = tok.encode(text, add_special_tokens=False)
    for marker in ("<think>", "</think>", "\\boxed{", "<|im_start|>", "<|im_end|>"):
        one = tok.encode(marker, add_special_tokens=False)
        assert one == [tok.convert_tokens_to_ids(marker)], marker
        assert one[0] in ids
    assert tok.decode(ids, skip_special_tokens=False) == text
    # thinking markers and \boxed{ are text, chat markers are special
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>1+2=3\n</think>\\boxed{3}"
    assert tok.encode("}", add_special_tokens=False) == [tok.convert_tokens_to_ids("}")]


def test_special_ids_and_padding(tok):
    assert (tok.pad_token, tok.pad_token_id) == ("<pad>", 0)
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)
    assert tok.padding_side == "left"
    batch = tok(["12", "1+2=3"], padding=True, add_special_tokens=False)
    assert batch["input_ids"][0][:3] == [0, 0, 0]
    assert batch["attention_mask"][0] == [0, 0, 0, 1, 1]
    assert tok.encode("é", add_special_tokens=False) == [tok.unk_token_id]


def test_extra_chars_get_new_ids():
    base = build_char_tokenizer()
    ext = build_char_tokenizer(extra_chars="éπ1")  # "1" already present: ignored
    assert len(ext) == len(base) + 2
    assert ext.decode(ext.encode("π=3", add_special_tokens=False)) == "π=3"
    with pytest.raises(TypeError, match="extra_chars"):
        build_char_tokenizer(extra_chars=3)  # type: ignore[arg-type]


def test_chat_template(tok):
    out = tok.apply_chat_template(
        [{"role": "user", "content": "Compute 1+2."}], tokenize=False, add_generation_prompt=True
    )
    assert out == "<|im_start|>user\nCompute 1+2.<|im_end|>\n<|im_start|>assistant\n"


# ---------------------------------------------------------------- tiny models


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_is_deterministic_and_small(arch):
    """Fast by construction (a machine-independent bound, no wall clock): 2 layers, width 64, < 100k weights."""
    model, tok = tiny_model_and_tokenizer(arch, seed=3)
    assert model.config.num_hidden_layers == 2 and sum(p.numel() for p in model.parameters()) < 100_000
    again = tiny_model(arch, vocab_size=len(tok), seed=3)
    other = tiny_model(arch, vocab_size=len(tok), seed=4)
    w = model.get_input_embeddings().weight
    assert w.shape == (len(tok), 64)
    assert torch.equal(w, again.get_input_embeddings().weight)
    assert not torch.equal(w, other.get_input_embeddings().weight)
    assert not model.training
    assert model.config.eos_token_id == tok.eos_token_id == 2
    assert model.config.pad_token_id == tok.pad_token_id == 0
    assert model.generation_config.eos_token_id == 2
    assert model.lm_head.weight.data_ptr() == w.data_ptr()  # tied
    assert model.config.num_hidden_layers == 2


def test_tiny_model_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_model("llama", vocab_size=50)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_model_options():
    m = tiny_model("qwen2", vocab_size=40, tie_word_embeddings=False, dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16
    assert m.lm_head.weight.data_ptr() != m.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"arch": "gpt2"}, "allowed qwen2, qwen3, llama"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_size": 62}, "divisible by num_heads"),
        ({"num_kv_heads": 3}, "divisible by num_kv_heads"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_tiny_model_rejects_bad_input(kw, match):
    args = {"vocab_size": 40, **kw}
    with pytest.raises(ValueError, match=match):
        tiny_model(**args)


def test_tiny_model_and_tokenizer_rejects_vocab_size():
    with pytest.raises(ValueError, match="vocab_size"):
        tiny_model_and_tokenizer(vocab_size=10)


# ---------------------------------------------------------------- incremental decoding parity


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on the first real token of a left-padded row."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_cached_soft_steps_match_full_forward(arch):
    """Prefill + 2 cached steps of soft (mixture) embeddings == one uncached forward (fp32)."""
    model, tok = tiny_model_and_tokenizer(arch, seed=1)
    emb = model.get_input_embeddings().weight
    batch = tok(["12+34=", "7+8+9+10="], padding=True, add_special_tokens=False, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert mask[0, 0] == 0  # left padded

    gen = torch.Generator().manual_seed(0)
    steps = []
    for _ in range(2):  # soft inputs: random convex mixtures of 5 token embeddings
        cand = torch.randint(7, len(tok), (2, 5), generator=gen)
        w = torch.softmax(torch.randn(2, 5, generator=gen), -1)
        steps.append((w.unsqueeze(-1) * emb[cand]).sum(1, keepdim=True))

    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        out = model(
            inputs_embeds=emb[ids],
            attention_mask=mask,
            position_ids=_positions(mask),
            past_key_values=cache,
            use_cache=True,
        )
        for e in steps:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(
                inputs_embeds=e,
                attention_mask=mask,
                position_ids=_positions(mask)[:, -1:],
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        assert out.past_key_values.get_seq_length() == mask.shape[1]
        full = model(
            inputs_embeds=torch.cat([emb[ids], *steps], dim=1),
            attention_mask=mask,
            position_ids=_positions(mask),
            use_cache=False,
        )
    diff = (out.logits[:, -1] - full.logits[:, -1]).abs().max().item()
    assert diff < 1e-5
    # left padding must not change a row's result: the padded row 0 run alone, unpadded
    n_pad = int((mask[0] == 0).sum())
    with torch.no_grad():
        alone = model(inputs_embeds=torch.cat([emb[ids], *steps], dim=1)[:1, n_pad:])
    assert (alone.logits[0, -1] - full.logits[0, -1]).abs().max().item() < 1e-5
