"""Shared fixtures of the trainer tests: a tiny-model trainer on the builtin arithmetic task."""

from pathlib import Path

import pytest

from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer
from softgrpo.config import load_config
from softgrpo.reference.trainer import Trainer

REWARDS = Path(__file__).with_name("trainer_rewards.py")
BASE = [
    "data.train_files=builtin:arithmetic",
    "data.train_size=64",
    "data.train_batch_size=4",
    "data.max_response_length=8",
    "data.apply_chat_template=false",
    "actor_rollout_ref.rollout.n=4",
    "actor_rollout_ref.rollout.top_p=1.0",
    "actor_rollout_ref.rollout.top_k=-1",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.ppo_micro_batch_size=4",
    "actor_rollout_ref.actor.optim.weight_decay=0.0",
    f"custom_reward_function.path={REWARDS}",
    "custom_reward_function.name=digit_share",
    "trainer.logger=[jsonl]",
    "trainer.progress=false",
    "trainer.save_freq=0",
    "soft_thinking.gumbel_softmax_temperature=0.5",
]


def _make(tmp_path: Path, *overrides: str, arch: str = "qwen2") -> Trainer:
    cfg = load_config(None, [*BASE, f"trainer.default_local_dir={tmp_path}", *overrides])
    model, tok = tiny_model_and_tokenizer(arch)
    return Trainer(cfg, model=model, tokenizer=tok)



@pytest.fixture
def make():
    """``make(out_dir, *overrides, arch="qwen2")`` -> a :class:`Trainer` on a fresh tiny model."""
    return _make


@pytest.fixture
def base_overrides() -> list[str]:
    return list(BASE)
