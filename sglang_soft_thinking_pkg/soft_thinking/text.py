"""Text conventions shared by every engine, trainer and the evaluation: the think-end marker,
the chat prompt, and how seeds are derived from keys."""

from __future__ import annotations

import hashlib
from typing import Any

THINK_END = "</think>"
"""The string that ends the thinking phase (one token in R1-style models, several pieces elsewhere)."""


def apply_chat_template(tokenizer: Any, user_text: str) -> str:
    """The prompt text of one user turn with the assistant generation prompt appended."""
    if not isinstance(user_text, str):
        raise TypeError(f"user_text must be a str, got {type(user_text).__name__}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat_template")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
    )


def derive_seed(*key: object) -> int:
    """A 63-bit seed from a key tuple: ``sha256(":".join(key))[:8]`` little-endian, top bit cleared.

    SHA-256 decorrelates nearby keys (seed 0/1, prompt 3/4), unlike ``seed + index``.
    """
    digest = hashlib.sha256(":".join(str(k) for k in key).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
