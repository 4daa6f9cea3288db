"""Issue 17 §4-§7 on the trainer side: verified checkpoints (manifest with sizes and sha256), resume
from the newest checkpoint that verifies (the damaged one skipped, named and kept), state loaded with
``weights_only=True`` (a crafted pickle runs nothing), one run per folder, a damaged metrics line kept
aside, a per-sample grading failure counted instead of failing the batch."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from softgrpo_cli_check import snapshot

from soft_thinking.runlock import RunLockedError, hold_run_lock
from softgrpo.reference.checkpoint import (
    MANIFEST,
    ResumeError,
    list_checkpoints,
    load_trainer_state,
    verify_checkpoint,
    write_manifest,
)


def steps(path: Path) -> list[int]:
    return [json.loads(x)["step"] for x in path.read_text().splitlines()]


def two_checkpoints(make, out: Path) -> tuple[Path, Path]:
    make(out, "trainer.total_training_steps=3", "trainer.save_freq=1", "trainer.stop_after_steps=2").train()
    first, second = list_checkpoints(out / "checkpoints")
    assert verify_checkpoint(first) is None and verify_checkpoint(second) is None
    return first, second


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_checkpoint_manifest_lists_every_file_with_size_and_sha256(make, tmp_path: Path) -> None:
    make(tmp_path, "trainer.total_training_steps=1").train()
    (ckpt,) = list_checkpoints(tmp_path / "checkpoints")
    files = json.loads((ckpt / MANIFEST).read_text())["files"]
    on_disk = {p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert set(files) == on_disk and {"model/model.safetensors", "trainer_state.pt", "config.json"} <= on_disk
    assert all(files[r]["size"] == (ckpt / r).stat().st_size for r in files)
    state = load_trainer_state(ckpt)  # weights_only=True: optimizer, scheduler, RNG states, cursor
    assert state["global_step"] == 1 and set(state["rng"]) >= {"python", "numpy", "torch"}
    # negative control: one flipped byte of the same size is caught by the hash, not only the size
    st = ckpt / "model" / "model.safetensors"
    data = bytearray(st.read_bytes())
    data[-1] ^= 0xFF
    st.write_bytes(bytes(data))
    assert "sha256" in verify_checkpoint(ckpt)


@pytest.mark.parametrize("damage", ["trainer_state.pt", "model/model.safetensors", "config.json", "manifest"])
def test_resume_skips_a_damaged_newest_checkpoint_and_keeps_it(make, tmp_path: Path, capsys, damage: str) -> None:
    first, second = two_checkpoints(make, tmp_path)
    if damage == "manifest":
        (second / MANIFEST).unlink()  # an interrupted or older-format save
    else:
        truncate(second / damage)
    kept = snapshot(second)
    capsys.readouterr()
    tr = make(tmp_path, "trainer.total_training_steps=3", "trainer.save_freq=1")
    out = capsys.readouterr().out
    assert tr.global_step == 1  # resumed from the newest checkpoint that verifies
    assert "skipping damaged checkpoint" in out and "global_step_2" in out
    assert (damage if damage != "manifest" else MANIFEST) in out  # says why
    aside = second.with_name("global_step_2.damaged")
    assert not second.exists() and snapshot(aside) == kept  # nothing the user had is deleted
    tr.train()
    assert steps(tmp_path / "metrics.jsonl") == [1, 2, 3]
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["global_step_2", "global_step_3"]


def test_no_checkpoint_verifies_is_one_error_and_nothing_changes(make, tmp_path: Path) -> None:
    first, second = two_checkpoints(make, tmp_path)
    truncate(first / "trainer_state.pt")
    truncate(second / "model" / "model.safetensors")
    before = snapshot(tmp_path)
    with pytest.raises(ResumeError, match=r"no checkpoint .* verifies: global_step_2: model/model.safetensors .*"
                                          r"global_step_1: trainer_state.pt"):
        make(tmp_path, "trainer.total_training_steps=3")
    assert snapshot(tmp_path) == before


class _Payload:
    """A pickle that runs a shell command when loaded with weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_trainer_state_runs_nothing_on_resume(make, tmp_path: Path) -> None:
    out, marker = tmp_path / "run", tmp_path / "pwned"
    make(out, "trainer.total_training_steps=2", "trainer.save_freq=1", "trainer.stop_after_steps=1").train()
    (ckpt,) = list_checkpoints(out / "checkpoints")
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    state["evil"] = _Payload(marker)
    torch.save(state, ckpt / "trainer_state.pt")
    write_manifest(ckpt)  # whoever can write the file can rewrite the manifest: the loader must still refuse
    assert verify_checkpoint(ckpt) is None
    with pytest.raises(ResumeError, match="trainer_state.pt cannot be loaded safely"):
        make(out, "trainer.total_training_steps=2")
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))  # positive control: the payload does run when unpickled
    assert marker.exists()


def test_resume_mode_disable_never_overwrites_an_earlier_runs_checkpoints(make, tmp_path: Path) -> None:
    make(tmp_path, "trainer.total_training_steps=1").train()
    before = snapshot(tmp_path)
    with pytest.raises(ResumeError, match="resume_mode=disable"):
        make(tmp_path, "trainer.total_training_steps=1", "trainer.resume_mode=disable")
    assert snapshot(tmp_path) == before


def test_a_held_run_folder_refuses_a_second_trainer_naming_the_holder(make, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with hold_run_lock(out):
        before = snapshot(tmp_path)
        with pytest.raises(RunLockedError, match=rf"in use by pid {os.getpid()}"):
            make(out, "trainer.total_training_steps=1")
        assert snapshot(tmp_path) == before
    make(out, "trainer.total_training_steps=1").train()  # released: the next run goes ahead
    assert steps(out / "metrics.jsonl") == [1]


def test_a_damaged_middle_metrics_line_is_kept_aside_not_fatal(make, tmp_path: Path) -> None:
    two_checkpoints(make, tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(["{not json", *lines]) + "\n")  # damaged first line, then steps 1, 2
    with pytest.warns(UserWarning, match="line 1 is not a metrics record"):
        tr = make(tmp_path, "trainer.total_training_steps=3")
    assert (tmp_path / "metrics.damaged.jsonl").read_text() == "{not json\n"
    tr.train()
    assert steps(metrics) == [1, 2, 3]


def test_one_failed_grade_scores_zero_and_is_counted_the_batch_goes_on(make, tmp_path: Path, capsys) -> None:
    """The real math-verify scorer on a 1 MB brace soup and an overlong box next to a correct answer."""
    tr = make(tmp_path, "trainer.total_training_steps=1", "custom_reward_function.path=null",
              "custom_reward_function.workers=1", "custom_reward_function.timeout_s=20")
    ex = tr.sampler.next_batch()[0]
    texts = [f"</think>\\boxed{{{ex.answer}}}", "</think>" + "\\boxed{" * ((1 << 20) // 7),
             "</think>\\boxed{" + "x^" * 5000 + "1}", "</think>\\boxed{-1}"]
    scores = tr.score([ex], 4, [SimpleNamespace(text=t) for t in texts])
    assert scores == [1.0, 0.0, 0.0, 0.0]
    assert tr.grading_failures == 1 and "1 of 4 samples failed grading" in capsys.readouterr().out
    m = tr.train()
    assert "reward/failed_samples" in m and m["reward/error_count"] >= 0
