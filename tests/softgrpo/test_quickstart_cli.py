"""Issue 17 §8: `python -m softgrpo.quickstart` rejects the overrides it would silently replace (the
arm, the run folder, the seed, thread counts, ...) and every bad value, before it writes anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from softgrpo_cli_check import assert_one_error, run_cli, snapshot

from softgrpo.quickstart.__main__ import NOT_OVERRIDABLE, main, parse_args

SUBPROCESS_CASES = [
    (["trainer.seed=3"], ["trainer.seed", "--seed"]),
    (["trainer.arm=grpo"], ["trainer.arm"]),
    (["--threads", "0"], ["--threads", ">= 1"]),
    (["actor_rollout_ref.actor.optim.lr=abc"], ["actor_rollout_ref.actor.optim.lr", "a finite number"]),
]


@pytest.mark.parametrize(("args", "named"), SUBPROCESS_CASES, ids=[" ".join(c[0]) for c in SUBPROCESS_CASES])
def test_quickstart_cli_rejects_before_any_write(tmp_path: Path, args: list[str], named: list[str]) -> None:
    proc = run_cli("softgrpo.quickstart", ["--out", "qs", *args], tmp_path)
    assert_one_error(proc, *named)
    assert snapshot(tmp_path) == {}


IN_PROCESS_CASES = [
    *[([f"{key}=1"], [key]) for key in NOT_OVERRIDABLE],
    (["trainer.num_threads=4"], ["--threads"]),
    (["soft_thinking.degenerate_as_discrete=true"], ["softgrpo_degenerate"]),
    (["--jobs", "0"], ["--jobs"]),
    (["--arms", "softgrpo"], ["--arms", "includes grpo"]),
    (["--arms", "grpo,ppo"], ["--arms", "softgrpo_degenerate"]),
    (["--arms", "grpo,grpo"], ["--arms"]),
    (["--seeds", "0"], ["--seeds"]),
    (["--seed", "-1"], ["--seed"]),
    (["--eval-n", "0"], ["--eval-n"]),
    (["--sft-target", "1.5"], ["target_accuracy"]),
    (["--config", "no/such.yaml"], ["no/such.yaml"]),
    (["trainer.device=gpu"], ["trainer.device"]),
    (["trainer.logger=[console,tb]"], ["trainer.logger"]),
    (["custom_reward_function.timeout_s=.inf"], ["custom_reward_function.timeout_s"]),
    (["noequals"], ["noequals"]),
]


@pytest.mark.parametrize(("args", "named"), IN_PROCESS_CASES, ids=[" ".join(c[0]) for c in IN_PROCESS_CASES])
def test_quickstart_main_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, args, named) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--out", "qs", "--fast", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for name in named:
        assert name in err[0], (name, err[0])
    assert snapshot(tmp_path) == {}


def test_honoured_overrides_reach_every_arm(tmp_path: Path) -> None:
    """Negative control: an override the quickstart does honour is accepted and lands in each arm's config."""
    args, _ = parse_args(["--out", str(tmp_path / "qs"), "--fast", "actor_rollout_ref.actor.optim.lr=1e-4"])
    for arm in ("grpo", "softgrpo", "softgrpo_degenerate"):
        assert args.load_arm_config(0, arm, tmp_path / "qs" / "seed0").actor.optim.lr == 1e-4
    assert not (tmp_path / "qs").exists()


def test_a_second_quickstart_on_one_out_folder_is_refused(tmp_path: Path, capsys) -> None:
    import os

    from soft_thinking.runlock import hold_run_lock

    out = tmp_path / "qs"
    with hold_run_lock(out):
        before = snapshot(tmp_path)
        assert main(["--out", str(out), "--fast", "--jobs", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by pid {os.getpid()}" in err[0], err
        assert snapshot(tmp_path) == before
