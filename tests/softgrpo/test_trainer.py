"""The reference trainer: learning signal, exact PPO ratio at the first mini-batch, replay parity,
zero-advantage groups, resume identity, interrupted checkpoints and config errors."""

import json
from pathlib import Path

import pytest
import torch

from soft_thinking.core.config import ConfigError
from softgrpo.config import load_config
from softgrpo.reference import checkpoint as ckpt_mod
from softgrpo.reference.data import DatasetError


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("arm", ["grpo", "softgrpo"])
def test_one_step_at_high_lr_changes_every_parameter(make, tmp_path: Path, arm: str) -> None:
    tr = make(tmp_path, f"trainer.arm={arm}", "trainer.total_training_steps=1", "actor_rollout_ref.actor.optim.lr=0.1")
    before = params(tr.model)
    m = tr.train()
    unchanged = [k for k, v in tr.model.named_parameters() if torch.equal(v.detach(), before[k])]
    assert unchanged == []
    assert m["actor/grad_norm"] > 0


@pytest.mark.parametrize("arm", ["grpo", "softgrpo"])
def test_exact_ratio_and_replay_parity(make, tmp_path: Path, arm: str) -> None:
    tr = make(tmp_path, f"trainer.arm={arm}", "trainer.total_training_steps=2", "actor_rollout_ref.actor.optim.lr=1e-3")
    tr.train()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for m in lines:
        assert m["actor/first_minibatch_max_abs_log_ratio"] == 0.0  # ratio exactly 1
        assert m["replay/max_abs_diff"] <= 1e-5
    if arm == "softgrpo":
        assert lines[0]["soft/step_share"] > 0.5
    else:
        assert lines[0]["soft/step_share"] == 0.0


def test_equal_rewards_give_no_update_and_zero_kl(make, tmp_path: Path) -> None:
    tr = make(
        tmp_path, "trainer.total_training_steps=1", "custom_reward_function.name=constant",
        "actor_rollout_ref.actor.optim.lr=0.1",
    )
    before = params(tr.model)
    m = tr.train()
    assert m["adv/zero_group_share"] == 1.0
    assert m["actor/kl_ref"] == 0.0  # policy == reference at the first step
    assert all(torch.equal(v.detach(), before[k]) for k, v in tr.model.named_parameters())


@pytest.mark.parametrize("arm", ["grpo", "softgrpo"])
def test_reward_rises_on_a_learnable_task(make, tmp_path: Path, arm: str) -> None:
    tr = make(
        tmp_path, f"trainer.arm={arm}", "trainer.total_training_steps=14", "actor_rollout_ref.actor.optim.lr=1e-2",
        "actor_rollout_ref.actor.use_kl_loss=false", "data.train_batch_size=8", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "actor_rollout_ref.actor.ppo_micro_batch_size=16",
    )
    tr.train()
    r = [json.loads(x)["reward/mean"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(r[-3:]) / 3 > sum(r[:3]) / 3 + 0.1, r


def test_resume_is_bit_identical(make, tmp_path: Path) -> None:
    common = ["trainer.arm=softgrpo", "trainer.total_training_steps=4", "trainer.save_freq=2",
              "actor_rollout_ref.actor.optim.lr=1e-2"]
    full = make(tmp_path / "full", *common)
    full.train()
    part = make(tmp_path / "part", *common, "trainer.stop_after_steps=2")
    part.train()
    assert part.global_step == 2
    resumed = make(tmp_path / "part", *common)  # resume_mode auto
    assert resumed.global_step == 2
    resumed.train()
    for (k, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(a, b), k

    def clean(path: Path) -> list[dict]:
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith(("timing/", "throughput/"))} for r in rows]

    assert clean(tmp_path / "full" / "metrics.jsonl") == clean(tmp_path / "part" / "metrics.jsonl")


def test_interrupted_checkpoint_write_leaves_previous_loadable(make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = ["trainer.total_training_steps=2", "trainer.save_freq=1"]
    tr = make(tmp_path, *common, "trainer.stop_after_steps=1")
    tr.train()
    tr2 = make(tmp_path, *common)
    assert tr2.global_step == 1

    def boom(*a, **k):
        raise KeyboardInterrupt("killed during checkpoint write")

    monkeypatch.setattr(ckpt_mod.torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        tr2.train()
    monkeypatch.undo()
    assert ckpt_mod.latest_checkpoint(tmp_path / "checkpoints").name == "global_step_1"
    tr3 = make(tmp_path, *common)
    assert tr3.global_step == 1


@pytest.mark.parametrize(
    "override,match",
    [
        ("actor_rollout_ref.rollout.n=1", "actor_rollout_ref.rollout.n"),
        ("actor_rollout_ref.actor.ppo_mini_batch_size=3", "ppo_mini_batch_size"),
        ("actor_rollout_ref.actor.ppo_micro_batch_size=3", "ppo_micro_batch_size"),
        ("soft_thinking.gumbel_softmax_temperature=0.0", "gumbel_softmax_temperature"),
        ("soft_thinking.noise=levy", "noise"),
        ("trainer.arm=ppo", "trainer.arm"),
        ("actor_rollout_ref.actor.optim.lr=-1", "optim.lr"),
        ("data.train_batch_size=0", "data.train_batch_size"),
        ("trainer.logger=[mlflow]", "trainer.logger"),
        ("actor_rollout_ref.actor.bogus=1", "actor_rollout_ref.actor.bogus"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(base_overrides, override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, [*base_overrides, override])


def test_dataset_row_without_answer_and_unknown_reward_path(make, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2"}\n')
    with pytest.raises(DatasetError, match=r"row 1 .*answer"):
        make(tmp_path, f"data.train_files={data}", "data.train_batch_size=1", "actor_rollout_ref.actor.ppo_mini_batch_size=1")
    with pytest.raises(ConfigError, match="custom_reward_function.path"):
        make(tmp_path, "custom_reward_function.path=tests.no_such_module:fn")


def test_tensorboard_logger_writes_events(make, tmp_path: Path) -> None:
    tr = make(tmp_path, "trainer.total_training_steps=1", "trainer.logger=[jsonl,tensorboard]")
    tr.train()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_overlong_prompt_is_an_error_naming_the_limit(make, tmp_path: Path) -> None:
    tr = make(tmp_path, "trainer.total_training_steps=1", "data.max_prompt_length=5")
    with pytest.raises(ConfigError, match="data.max_prompt_length=5"):
        tr.train()


def test_validation_runs_before_training_and_every_test_freq_steps(make, base_overrides, tmp_path: Path) -> None:
    tr = make(tmp_path, "trainer.total_training_steps=2", "trainer.test_freq=2", "data.val_files=builtin:arithmetic",
              "data.val_size=3", "actor_rollout_ref.rollout.val_kwargs.n=2",
              "actor_rollout_ref.rollout.val_kwargs.do_sample=true", "actor_rollout_ref.rollout.val_kwargs.temperature=1.0")
    tr.train()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val_steps = [ln["step"] for ln in lines if "val/mean@n" in ln]
    assert val_steps == [0, 2]
    assert all(0.0 <= ln["val/mean@n"] <= ln["val/pass@2"] <= 1.0 for ln in lines if "val/mean@n" in ln)
    with pytest.raises(ConfigError, match="trainer.test_freq"):
        load_config(None, [*base_overrides, "trainer.test_freq=5"])
