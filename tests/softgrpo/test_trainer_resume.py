"""Issue 8 §4.3-4.5, §4.8: resume compares configs, each arm has its own default folder, metrics.jsonl
is never truncated (a torn last line is dropped with a warning), and the train command turns user
errors into one `error:` line with exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from softgrpo.config import load_config
from softgrpo.reference.checkpoint import ResumeError, config_differences
from softgrpo.train import main as train_main

REPO = Path(__file__).resolve().parents[2]


def steps(path: Path) -> list[int]:
    return [json.loads(x)["step"] for x in path.read_text().splitlines()]


@pytest.mark.parametrize(("override", "key"), [
    ("trainer.arm=grpo", "trainer.arm"),
    ("actor_rollout_ref.actor.optim.lr=0.5", "actor_rollout_ref.actor.optim.lr"),
    ("data.train_size=128", "data.train_size"),
    ("actor_rollout_ref.model.dtype=bfloat16", "actor_rollout_ref.model.dtype"),
    ("soft_thinking.gumbel_softmax_temperature=0.25", "soft_thinking.gumbel_softmax_temperature"),
])
def test_resume_with_a_changed_essential_key_is_refused_naming_it(make, tmp_path: Path, override: str, key: str) -> None:
    make(tmp_path, "trainer.total_training_steps=2", "trainer.save_freq=1", "trainer.stop_after_steps=1").train()
    with pytest.raises(ResumeError, match=rf"{key}: .* != "):
        make(tmp_path, "trainer.total_training_steps=2", override)
    # an explicit override continues (with a warning), and harmless keys never block a resume
    tr = make(tmp_path, "trainer.total_training_steps=3", override, "trainer.resume_allow_config_change=true",
              "trainer.logger=[jsonl,console]")
    assert tr.global_step == 1


def test_harmless_keys_may_change() -> None:
    a = load_config(None, ["data.train_files=builtin:arithmetic"]).to_dict()
    b = load_config(None, ["data.train_files=builtin:arithmetic", "trainer.total_training_steps=7",
                           "trainer.logger=[console]", "trainer.save_freq=3", "custom_reward_function.workers=1"]).to_dict()
    assert config_differences(a, b) == []


def test_each_arm_gets_its_own_default_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(REPO / "configs" / "quickstart.yaml", ["trainer.arm=grpo"])
    assert cfg.out_dir == Path("runs/train/grpo")
    assert load_config(REPO / "configs" / "quickstart.yaml").out_dir == Path("runs/train/softgrpo")
    explicit = load_config(REPO / "configs" / "quickstart.yaml", ["trainer.default_local_dir=/tmp/x/grpo"])
    assert explicit.out_dir == Path("/tmp/x/grpo")  # the quickstart's per-arm override keeps working


def test_a_fresh_run_never_truncates_an_existing_metrics_file(make, tmp_path: Path) -> None:
    old = "".join(json.dumps({"step": s, "reward/mean": 0.1}) + "\n" for s in range(1, 501))
    (tmp_path / "metrics.jsonl").write_text(old)  # another run's log, no checkpoint here
    with pytest.warns(UserWarning, match="moved to"):
        make(tmp_path, "trainer.total_training_steps=1").train()
    assert (tmp_path / "metrics.1.jsonl").read_text() == old
    assert steps(tmp_path / "metrics.jsonl") == [1]


def test_torn_last_line_is_dropped_with_a_warning_and_later_steps_are_kept_aside(make, tmp_path: Path) -> None:
    common = ["trainer.total_training_steps=3", "trainer.save_freq=1"]
    make(tmp_path, *common, "trainer.stop_after_steps=2").train()
    metrics = tmp_path / "metrics.jsonl"
    # a step logged after the last checkpoint, then a kill in the middle of writing the next line
    with metrics.open("a") as f:
        f.write(json.dumps({"step": 3, "reward/mean": 0.5}) + "\n" + '{"step": 4, "reward/me')
    import shutil

    shutil.rmtree(tmp_path / "checkpoints" / "global_step_2")  # resume from step 1
    with pytest.warns(UserWarning, match="torn last line"):
        tr = make(tmp_path, *common)
    assert tr.global_step == 1
    assert steps(metrics) == [1]
    superseded = (tmp_path / "metrics.superseded.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in superseded[:2]] == [2, 3] and superseded[2].startswith('{"step": 4')
    tr.train()
    assert steps(metrics) == [1, 2, 3]


@pytest.mark.parametrize(("args", "named"), [
    (["--config", "no/such.yaml"], "no/such.yaml"),
    (["--config", "configs/quickstart.yaml", "trainer.bogus=1"], "trainer.bogus"),
    (["--config", "configs/quickstart.yaml", "oops"], "oops"),
    (["--config", "configs/quickstart.yaml", "actor_rollout_ref.rollout.top_p=1.5"], "top_p"),
    (["--config", "configs/quickstart.yaml", "data.train_files=no/such.jsonl"], "no/such.jsonl"),
])
def test_train_command_config_errors_are_one_line_exit_2(args, named, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err


def test_train_module_missing_model_and_corrupt_data(tmp_path: Path) -> None:
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": \n')
    for override, named in ((f"actor_rollout_ref.model.path={tmp_path / 'no-model'}", "no-model"),
                            (f"data.train_files={bad}", "row 1 (line 2) is not valid JSON")):
        proc = subprocess.run(
            [sys.executable, "-m", "softgrpo.train", "--config", "configs/quickstart.yaml", override,
             f"trainer.default_local_dir={tmp_path / 'run'}", "data.train_batch_size=1",
             "actor_rollout_ref.actor.ppo_mini_batch_size=1", "actor_rollout_ref.actor.ppo_micro_batch_size=4"],
            capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and named in errors[0], proc.stderr
