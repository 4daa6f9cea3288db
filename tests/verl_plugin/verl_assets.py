"""Tiny on-disk assets for the verl plug-in tests: a Qwen2 (hidden 64, 2 layers, untied embeddings),
its character tokenizer in a folder of its own, and verl-format parquets of one-digit additions.

The tokenizer gets its own folder (``actor_rollout_ref.model.tokenizer_path``): saved beside a
``qwen2`` config, ``AutoTokenizer`` would reload it as ``Qwen2Tokenizer`` and drop whitespace.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer


def make_model(root: Path, tie_word_embeddings: bool = False, seed: int = 0) -> tuple[Path, Path]:
    """Save the tiny model to ``root/model`` and its tokenizer to ``root/tok``; return both paths."""
    model, tok = tiny_model_and_tokenizer("qwen2", hidden_size=64, num_layers=2,
                                          tie_word_embeddings=tie_word_embeddings, seed=seed)
    model_dir, tok_dir = root / "model", root / "tok"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    tok.save_pretrained(tok_dir)
    return model_dir, tok_dir


def verl_rows(split: str, n: int, seed: int = 0) -> list[dict]:
    """verl's RL parquet layout (data_source, prompt messages, ability, reward_model, extra_info) of
    ``n`` one-digit additions, deterministic in ``(split, seed)``."""
    offset = (0 if split == "train" else 50) + seed
    rows = []
    for i in range(n):
        a, b = (i + offset) % 9 + 1, (3 * i + offset) % 9 + 1
        rows.append({
            "data_source": "arithmetic",
            "prompt": [{"role": "user", "content": f"Compute {a}+{b}."}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": split, "index": i},
        })
    return rows


def make_parquets(root: Path, n_train: int = 16, n_val: int = 4) -> tuple[Path, Path]:
    train, val = root / "train.parquet", root / "val.parquet"
    pd.DataFrame(verl_rows("train", n_train)).to_parquet(train)
    pd.DataFrame(verl_rows("test", n_val)).to_parquet(val)
    return train, val
