"""Issue 17: `python -m softgrpo.train` validates every input before any work: each bad value below,
given through the real command line, exits 2 with exactly one `error:` line that names the key and
the allowed values, and leaves the folder it ran in (and the run folder) untouched.

The in-process cases at the end run the same `main()` on more values (fast), with the same checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from softgrpo_cli_check import CONFIG, assert_one_error, run_cli, snapshot

from softgrpo.config import load_config
from softgrpo.train import main as train_main

SMALL = ["data.train_size=16", "data.train_batch_size=2", "actor_rollout_ref.actor.ppo_mini_batch_size=2",
         "actor_rollout_ref.actor.ppo_micro_batch_size=4", "data.max_response_length=8", "trainer.progress=false"]

# (override, strings the error line must contain): one per class of issue 17 §1 (types, ranges, enums,
# cross-field rules, unknown keys) plus the inputs checked by loading (data, model)
SUBPROCESS_CASES = [
    ("actor_rollout_ref.actor.optim.lr=abc", ["actor_rollout_ref.actor.optim.lr", "a finite number"]),
    ("actor_rollout_ref.actor.optim.betas=[2.0,0.999]", ["optim.betas", "[0, 1)"]),
    ("trainer.device=5", ["trainer.device", "'cpu', 'cuda' or 'cuda:N'"]),
    ("trainer.device=cuda", ["trainer.device", "no CUDA device"]),
    ("soft_thinking.gumbel_clamp=[a,b]", ["gumbel_clamp", "two finite numbers"]),
    ("custom_reward_function.timeout_s=abc", ["custom_reward_function.timeout_s", "a finite number"]),
    ("custom_reward_function.timeout_s=.inf", ["custom_reward_function.timeout_s", "a finite number"]),
    ("custom_reward_function.timeout_s=-1", ["custom_reward_function.timeout_s", "(0, 86400.0]"]),
    ("data.shuffle='false'", ["data.shuffle", "true or false"]),
    ("soft_thinking.degenerate_as_discrete='false'", ["degenerate_as_discrete", "true or false"]),
    ("trainer.logger=[console,tb]", ["trainer.logger", "console"]),
    ("trainer.bogus=1", ["trainer.bogus", "allowed under trainer"]),
    ("data.train_files=builtin:arithmetic?digits=abc", ["data.train_files", "digits", "an integer"]),
    ("actor_rollout_ref.model.path=no/such/model", ["no/such/model"]),
]


@pytest.mark.parametrize(("override", "named"), SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES])
def test_train_cli_rejects_bad_input_before_any_write(tmp_path: Path, override: str, named: list[str]) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = snapshot(tmp_path)
    proc = run_cli("softgrpo.train", ["--config", str(CONFIG), *SMALL, f"trainer.default_local_dir={cwd / 'run'}",
                                      override], cwd)
    assert_one_error(proc, *named)
    assert snapshot(tmp_path) == before  # no run folder, no runs/, no outputs/


def test_train_cli_default_folder_is_not_created_on_error(tmp_path: Path) -> None:
    """Without trainer.default_local_dir the run would go to ./runs/train/<arm>: not created on error."""
    proc = run_cli("softgrpo.train", ["--config", str(CONFIG), "trainer.num_threads=0"], tmp_path)
    assert_one_error(proc, "trainer.num_threads", "an integer")
    assert snapshot(tmp_path) == {}


def test_train_cli_yaml_string_boolean_is_rejected(tmp_path: Path) -> None:
    """A quoted "false" in a YAML file would read as true in Python: rejected by name."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.read_text().replace("apply_chat_template: false", 'apply_chat_template: "false"'))
    assert '"false"' in cfg.read_text()
    before = snapshot(tmp_path)
    proc = run_cli("softgrpo.train", ["--config", str(cfg)], tmp_path)
    assert_one_error(proc, "data.apply_chat_template", "true or false")
    assert snapshot(tmp_path) == before


IN_PROCESS_CASES = [
    ("trainer.arm=ppo", ["trainer.arm", "grpo"]),
    ("trainer.arm=[grpo]", ["trainer.arm", "a string"]),
    ("trainer.device=gpu", ["trainer.device", "'cpu'"]),
    ("trainer.device=cuda:x", ["trainer.device"]),
    ("trainer.seed=-1", ["trainer.seed", "2**63"]),
    ("trainer.seed=1.5", ["trainer.seed", "an integer"]),
    ("trainer.total_training_steps=1.5", ["trainer.total_training_steps", "an integer"]),
    ("trainer.total_training_steps=true", ["trainer.total_training_steps", "an integer"]),
    ("trainer.num_threads=100000", ["trainer.num_threads", "1024"]),
    ("trainer.save_freq=-1", ["trainer.save_freq", ">= 0"]),
    ("trainer.resume_mode=always", ["trainer.resume_mode", "'auto' or 'disable'"]),
    ("trainer.logger=console,jsonl", ["trainer.logger"]),
    ("trainer.progress=1", ["trainer.progress", "true or false"]),
    ("data.val_files=null trainer.test_freq=5", ["trainer.test_freq", "data.val_files"]),  # cross-field
    ("data.val_files=null", None),  # allowed (with test_freq 0): positive control below
    ("data.train_files=data.csv", ["data.train_files", ".jsonl or .parquet"]),
    ("data.train_files=builtin:sudoku", ["sudoku", "arithmetic"]),
    ("data.train_files=builtin:arithmetic?digits=12", ["digits", "1..9"]),
    ("data.train_files=builtin:arithmetic?colour=red", ["colour", "num_terms"]),
    ("data.train_batch_size=0", ["data.train_batch_size", ">= 1"]),
    ("data.prompt_key=''", ["data.prompt_key", "non-empty"]),
    ("actor_rollout_ref.rollout.n=1", ["actor_rollout_ref.rollout.n", ">= 2"]),
    ("actor_rollout_ref.rollout.top_p=nan", ["actor_rollout_ref.rollout.top_p", "finite"]),
    ("actor_rollout_ref.rollout.temperature=0", ["temperature", "> 0 for training"]),
    ("actor_rollout_ref.actor.ppo_mini_batch_size=3", ["ppo_mini_batch_size", "divisor"]),
    ("actor_rollout_ref.actor.clip_ratio=1.5", ["actor_rollout_ref.actor.clip_ratio", "(0, 1)"]),
    ("actor_rollout_ref.actor.clip_ratio_c=1", ["clip_ratio_c", "> 1"]),
    ("actor_rollout_ref.actor.optim.betas=[0.9]", ["optim.betas", "2 values"]),
    ("actor_rollout_ref.actor.optim.betas=[0.9,-0.1]", ["optim.betas", "[0, 1)"]),
    ("actor_rollout_ref.actor.optim.lr=-1e-5", ["optim.lr", "> 0"]),
    ("actor_rollout_ref.actor.optim.lr_scheduler=linear", ["lr_scheduler", "cosine"]),
    ("actor_rollout_ref.actor.loss_agg_mode=mean", ["loss_agg_mode", "token-mean"]),
    ("actor_rollout_ref.model.dtype=fp8", ["model.dtype", "bfloat16"]),
    ("actor_rollout_ref.model.trust_remote_code='true'", ["trust_remote_code", "true or false"]),
    ("custom_reward_function.timeout_s=1e300", ["custom_reward_function.timeout_s", "86400"]),
    ("custom_reward_function.workers=0", ["custom_reward_function.workers", "[1, 256]"]),
    ("custom_reward_function.name=1bad", ["custom_reward_function.name", "identifier"]),
    ("soft_thinking.gumbel_clamp=5", ["gumbel_clamp"]),
    ("soft_thinking.gumbel_clamp=[3,1]", ["gumbel_clamp", "low < high"]),
    ("soft_thinking.max_topk=abc", ["max_topk", "an integer"]),
    ("soft_thinking.noise=uniform", ["noise", "gumbel"]),
    ("soft_thinking.add_noise_gumbel_softmax='false'", ["add_noise_gumbel_softmax", "true or false"]),
    ("soft_thinking.enable_soft_thinking=false", ["enable_soft_thinking", "trainer.arm"]),
    ("soft_thinking.bogus=1", ["bogus", "allowed"]),
    ("soft_thinking.temperature=0.5", ["soft_thinking.temperature", "actor_rollout_ref.rollout.temperature"]),
    ("algorithm.adv_estimator=gae", ["algorithm.adv_estimator", "'grpo'"]),
    ("algorithm.use_kl_in_reward=true", ["algorithm.use_kl_in_reward"]),
    ("actor_rollout_ref.rollout.val_kwargs.do_sample='true'", ["val_kwargs.do_sample", "true or false"]),
    ("actor_rollout_ref=5", ["actor_rollout_ref", "a mapping"]),
]


@pytest.mark.parametrize(("override", "named"), IN_PROCESS_CASES, ids=[c[0] for c in IN_PROCESS_CASES])
def test_train_main_rejects_more_bad_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                            override: str, named: list[str] | None) -> None:
    monkeypatch.chdir(tmp_path)
    if named is None:  # positive control: the same path accepts a valid value
        assert load_config(CONFIG, override.split()).data.val_files is None
        return
    # SMALL and one step: a case that were wrongly accepted would fail fast, not train for minutes
    assert train_main(["--config", str(CONFIG), *SMALL, "trainer.total_training_steps=1", *override.split()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for name in named:
        assert name in err[0], (name, err[0])
    assert snapshot(tmp_path) == {}


def test_one_string_logger_is_a_one_element_list_as_in_verl() -> None:
    """verl's Tracking turns a string backend into [backend]; so does the schema (not letter by letter)."""
    assert load_config(CONFIG, ["trainer.logger=console"]).trainer.logger == ["console"]
    assert load_config(CONFIG, ["trainer.logger=[console,jsonl]"]).trainer.logger == ["console", "jsonl"]
    assert load_config(CONFIG, ["trainer.logger=[]"]).trainer.logger == []


def test_valid_values_pass_the_same_checks() -> None:
    """Negative control of the cases above: well-formed values of the same keys are accepted."""
    cfg = load_config(CONFIG, ["actor_rollout_ref.actor.optim.betas=[0.9,0.98]", "custom_reward_function.timeout_s=5",
                               "soft_thinking.gumbel_clamp=[-1,2]", "trainer.seed=7", "data.shuffle=false",
                               "actor_rollout_ref.actor.optim.lr=1", "data.train_files=builtin:arithmetic?digits=1"])
    assert cfg.actor.optim.betas == (0.9, 0.98) and cfg.actor.optim.lr == 1.0
    assert isinstance(cfg.actor.optim.lr, float) and cfg.custom_reward_function.timeout_s == 5.0
    assert cfg.soft_thinking_config((7,)).gumbel_clamp == (-1.0, 2.0)
    assert cfg.data.shuffle is False and cfg.trainer.seed == 7
