"""Tiny offline models and a character-level tokenizer for tests and the embedded default.

Everything here is built in memory, without network or files, in well under a second:

- :func:`build_char_tokenizer` -- one token per character plus the chat/thinking markers
  (``<|im_start|>``, ``<|im_end|>``, ``<think>``, ``</think>``, ``\\boxed{``) as single tokens,
  with a ChatML chat template.
- :func:`tiny_model` -- a randomly initialised, seeded Qwen2 / Qwen3 / Llama causal LM.
- :func:`tiny_model_and_tokenizer` -- both, with the model's special ids taken from the tokenizer.
"""

from __future__ import annotations

import string
from typing import Any

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from soft_thinking.text import THINK_END

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START = "<think>"
BOXED_OPEN = "\\boxed{"

#: Special tokens (skipped by ``decode(skip_special_tokens=True)``), in id order 0..3.
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, IM_START, IM_END, UNK_TOKEN)
#: Added tokens that are ordinary text (kept by every decode), ids 4..6.
TEXT_MARKER_TOKENS: tuple[str, ...] = (THINK_START, THINK_END, BOXED_OPEN)

#: The default alphabet: every printable ASCII character except tab-like whitespace, plus newline.
DEFAULT_ALPHABET: str = string.digits + string.ascii_lowercase + string.ascii_uppercase + string.punctuation + " \n"

CHATML_TEMPLATE: str = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CONFIGS: dict[str, tuple[type, type]] = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
}
ARCHS: tuple[str, ...] = tuple(_CONFIGS)


def build_char_tokenizer(extra_chars: str = "") -> PreTrainedTokenizerFast:
    """Build a character-level fast tokenizer with ChatML and thinking markers.

    Ids 0..3 are ``<pad>``, ``<|im_start|>``, ``<|im_end|>`` (EOS), ``<unk>``; ids 4..6 are
    ``<think>``, ``</think>``, ``\\boxed{`` (single, non-special tokens, so they survive
    ``skip_special_tokens=True``); then one id per character of :data:`DEFAULT_ALPHABET` and
    ``extra_chars`` (duplicates ignored). ``decode(encode(s)) == s`` for any text over that
    alphabet. Characters outside it map to ``<unk>``.

    Args:
        extra_chars: additional characters to give their own ids.

    Returns:
        A ``PreTrainedTokenizerFast`` with ``eos_token='<|im_end|>'``, ``pad_token='<pad>'``,
        left padding and a ChatML ``chat_template``.
    """
    if not isinstance(extra_chars, str):
        raise TypeError(f"extra_chars must be a str, got {type(extra_chars).__name__}")
    vocab: dict[str, int] = {}
    for tok in (*SPECIAL_TOKENS, *TEXT_MARKER_TOKENS):
        vocab[tok] = len(vocab)
    for ch in DEFAULT_ALPHABET + extra_chars:
        if ch not in vocab:
            vocab[ch] = len(vocab)

    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # Split text into single characters ("[\s\S]" also matches newlines).
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in TEXT_MARKER_TOKENS])

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    for tok in (*SPECIAL_TOKENS, *TEXT_MARKER_TOKENS):
        if tokenizer.convert_tokens_to_ids(tok) != vocab[tok]:  # pragma: no cover - sanity guard
            raise RuntimeError(f"char tokenizer: {tok!r} did not keep id {vocab[tok]}")
    return tokenizer


def tiny_model(
    arch: str = "qwen2",
    vocab_size: int | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    tie_word_embeddings: bool = True,
    seed: int = 0,
    max_position_embeddings: int = 512,
    dtype: torch.dtype = torch.float32,
    *,
    pad_token_id: int | None = 0,
    bos_token_id: int | None = 1,
    eos_token_id: int | None = 2,
) -> PreTrainedModel:
    """Build a small randomly initialised causal LM, deterministic for a given ``seed``.

    The global torch RNG state is left untouched (initialisation runs under ``fork_rng``).
    Attention is ``sdpa`` (matches ``eager`` with left padding, ``inputs_embeds`` and a
    ``DynamicCache``; see ``tests/test_testing.py``).

    Args:
        arch: one of :data:`ARCHS` (``"qwen2"``, ``"qwen3"``, ``"llama"``).
        vocab_size: embedding rows; defaults to the char tokenizer's size.
        hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size: shape.
        tie_word_embeddings: share the input embedding and the LM head.
        seed: initialisation seed.
        max_position_embeddings: longest sequence (rotary cache size).
        dtype: parameter dtype.
        pad_token_id, bos_token_id, eos_token_id: special ids written into the config and the
            generation config (defaults match :func:`build_char_tokenizer`).

    Returns:
        The model in eval mode.
    """
    if arch not in _CONFIGS:
        raise ValueError(f"unknown arch {arch!r}: allowed {', '.join(ARCHS)}")
    if vocab_size is None:
        vocab_size = len(build_char_tokenizer())
    for name, value in (
        ("vocab_size", vocab_size),
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("num_kv_heads", num_kv_heads),
        ("intermediate_size", intermediate_size),
        ("max_position_embeddings", max_position_embeddings),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"tiny_model: {name} must be a positive int, got {value!r}")
    if hidden_size % num_heads:
        raise ValueError(f"tiny_model: hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
    if num_heads % num_kv_heads:
        raise ValueError(f"tiny_model: num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"tiny_model: dtype must be a floating torch.dtype, got {dtype!r}")

    config_cls, model_cls = _CONFIGS[arch]
    config = config_cls(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model = model.to(dtype=dtype)
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.bos_token_id = bos_token_id
    model.generation_config.eos_token_id = eos_token_id
    model.eval()
    return model


def tiny_model_and_tokenizer(
    arch: str = "qwen2", extra_chars: str = "", **kw: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Return ``(tiny_model(arch, ...), build_char_tokenizer(extra_chars))`` sized to each other.

    ``kw`` goes to :func:`tiny_model`; ``vocab_size`` and the special ids come from the tokenizer.
    """
    for key in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id"):
        if key in kw:
            raise ValueError(f"tiny_model_and_tokenizer: {key} is taken from the tokenizer, do not pass it")
    tokenizer = build_char_tokenizer(extra_chars)
    model = tiny_model(
        arch,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids(IM_START),
        eos_token_id=tokenizer.eos_token_id,
        **kw,
    )
    return model, tokenizer
