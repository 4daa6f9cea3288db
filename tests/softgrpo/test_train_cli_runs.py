"""Issue 17 §4-§6 through the real `python -m softgrpo.train` (subprocesses, a few seconds of training
each): two trainers on one folder (exactly one runs, the lock is released when the holder is killed),
resume past a damaged newest checkpoint, and a crafted trainer_state.pt that must run nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from softgrpo_cli_check import CONFIG, assert_one_error, run_cli

from softgrpo.reference.checkpoint import list_checkpoints, write_manifest

REWARDS = Path(__file__).with_name("trainer_rewards.py")
FAST = ["--config", str(CONFIG), "data.train_size=32", "data.train_batch_size=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size=4",
        "data.max_response_length=8", "trainer.progress=false", "trainer.logger=jsonl", "trainer.test_freq=0",
        f"custom_reward_function.path={REWARDS}", "custom_reward_function.name=digit_share"]


def steps(path: Path) -> list[int]:
    return [json.loads(x)["step"] for x in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_trainers_on_one_folder_exactly_one_runs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*FAST, f"trainer.default_local_dir={run}", "trainer.save_freq=0"]
    first = subprocess.Popen([sys.executable, "-m", "softgrpo.train", *args, "trainer.total_training_steps=100000"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (run / "metrics.jsonl").is_file() or not steps(run / "metrics.jsonl"):
            assert first.poll() is None, "the first trainer ended early"
            assert time.monotonic() < deadline, "the first trainer did not start within 240 s"
            time.sleep(0.5)
        second = run_cli("softgrpo.train", [*args, "trainer.total_training_steps=2"], tmp_path)
        assert_one_error(second, f"in use by pid {first.pid}", str(run))
        assert first.poll() is None  # the first one is still training, undisturbed
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the kernel releases the lock
        first.wait(timeout=60)
    logged = steps(run / "metrics.jsonl")
    assert logged == list(range(1, len(logged) + 1))  # one writer: no interleaved or repeated steps
    third = run_cli("softgrpo.train", [*args, "trainer.total_training_steps=1"], tmp_path)
    assert third.returncode == 0, third.stderr[-2000:]  # the crashed holder does not block a rerun
    assert steps(run / "metrics.jsonl") == [1]
    assert steps(run / "metrics.1.jsonl") == logged  # the killed run's log kept aside, not truncated


@pytest.mark.slow
def test_resume_past_a_damaged_checkpoint_and_refuse_a_crafted_state(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*FAST, f"trainer.default_local_dir={run}", "trainer.save_freq=1"]
    done = run_cli("softgrpo.train", [*args, "trainer.total_training_steps=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    crafted = tmp_path / "crafted"
    shutil.copytree(run, crafted)

    # 1. the newest checkpoint's weights are truncated: resume from step 1, say so, keep the damaged one
    st = run / "checkpoints" / "global_step_2" / "model" / "model.safetensors"
    st.write_bytes(st.read_bytes()[:100])
    res = run_cli("softgrpo.train", [*args, "trainer.total_training_steps=3"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "skipping damaged checkpoint" in res.stdout and "model/model.safetensors has 100 bytes" in res.stdout
    assert "at step 1" in res.stdout
    assert steps(run / "metrics.jsonl") == [1, 2, 3]
    assert (run / "checkpoints" / "global_step_2.damaged" / "model" / "model.safetensors").stat().st_size == 100

    # 2. a trainer_state.pt whose pickle runs a shell command (manifest rewritten to match): refused, nothing runs
    marker = tmp_path / "pwned"
    (ckpt,) = [p for p in list_checkpoints(crafted / "checkpoints") if p.name == "global_step_2"]
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    torch.save({**state, "evil": _Payload(str(marker))}, ckpt / "trainer_state.pt")
    write_manifest(ckpt)
    res = run_cli("softgrpo.train", [*FAST, f"trainer.default_local_dir={crafted}", "trainer.save_freq=1",
                                     "trainer.total_training_steps=3"], tmp_path)
    assert_one_error(res, "trainer_state.pt cannot be loaded safely")
    assert not marker.exists()
    assert steps(crafted / "metrics.jsonl") == [1, 2]  # the refused run wrote nothing


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
