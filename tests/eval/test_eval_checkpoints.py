"""Checkpoint download helper: offline errors, local resolution, verification."""

import hashlib
import json
from contextlib import nullcontext as _nullcontext

import pytest
import torch
from safetensors.torch import save_file

from eval import checkpoints as ck


def test_offline_list_and_download_fail_with_clear_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ck.CheckpointError, match=r"zz1358m/SofT-GRPO-master.*offline.*--local-dir"):
        ck.list_remote()
    assert ck.main(["download", "--local-dir", str(tmp_path / "ck"), "--revision", "abc"]) == 2
    assert "cannot reach the Hugging Face hub" in capsys.readouterr().err


def test_hub_exceptions_are_translated(monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def boom(self, *a, **k):
        raise OfflineModeIsEnabled("no network")

    monkeypatch.setattr(HfApi, "model_info", boom)
    with pytest.raises(ck.CheckpointError, match="OfflineModeIsEnabled"):
        ck.list_remote("me/repo")


def _fake_download(root):
    for name in ("SofT-GRPO-1.5B", "GRPO-1.5B"):
        d = root / name
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
        save_file({"w": torch.full((2,), float(len(name)))}, str(d / "model.safetensors"))
    (root / "README.md").write_text("hi")


def test_locate_skips_folders_with_a_corrupt_config_or_damaged_weights(tmp_path, capsys):
    _fake_download(tmp_path)
    (tmp_path / "GRPO-1.5B" / "config.json").write_text('{"model_type": "qwen2", "hidd')  # truncated
    w = tmp_path / "SofT-GRPO-1.5B" / "model.safetensors"
    good = tmp_path / "ok"
    good.mkdir()
    for f in ("config.json", "model.safetensors"):
        (good / f).write_bytes((tmp_path / "SofT-GRPO-1.5B" / f).read_bytes())
    w.write_bytes(w.read_bytes()[:-3])  # truncated download
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert ck.main(["locate", "--local-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"MODEL={good.resolve()}"]
    skipped = sorted(ln.split(":")[0] for ln in err.splitlines())
    assert skipped == sorted(f"skipped {tmp_path.resolve() / n}" for n in ("GRPO-1.5B", "SofT-GRPO-1.5B", "no-weights"))
    assert "config.json" in err and "damaged" in err and "no weights" in err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written or deleted


@pytest.mark.parametrize(("argv", "named"), [
    (["list", "--repo", "../../etc"], "--repo='../../etc'"),
    (["list", "--repo", "noslash"], "--repo='noslash'"),
    (["download", "--revision", "a b"], "--revision='a b'"),
    (["download", "--include", " "], "--include=' '"),
    (["locate", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_checkpoint_arguments_are_checked_before_the_network(argv, named, capsys, monkeypatch):
    monkeypatch.setattr(ck, "list_remote", lambda *a, **k: pytest.fail("reached the network"))
    with pytest.raises(SystemExit) if "--bogus" in argv else _nullcontext():
        assert ck.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err


def test_locate_prints_model_lines(tmp_path, capsys):
    _fake_download(tmp_path)
    dirs = ck.find_model_dirs(tmp_path)
    assert [d.name for d in dirs] == ["GRPO-1.5B", "SofT-GRPO-1.5B"]
    assert ck.main(["locate", "--local-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"MODEL={tmp_path.resolve() / 'GRPO-1.5B'}", f"MODEL={tmp_path.resolve() / 'SofT-GRPO-1.5B'}"]
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.find_model_dirs(tmp_path / "nope")


def test_verify_checks_size_and_sha256(tmp_path):
    _fake_download(tmp_path)
    w = tmp_path / "GRPO-1.5B" / "model.safetensors"
    good = ck.RemoteFile("GRPO-1.5B/model.safetensors", w.stat().st_size, hashlib.sha256(w.read_bytes()).hexdigest())
    assert ck.verify_files(tmp_path, [good, ck.RemoteFile("README.md", 2, None)]) == []
    bad_hash = ck.RemoteFile(good.path, good.size, "0" * 64)
    bad_size = ck.RemoteFile(good.path, good.size + 1, None)
    missing = ck.RemoteFile("SofT-GRPO-7B/config.json", 10, None)
    assert ck.verify_files(tmp_path, [bad_hash, bad_size, missing]) == [
        "GRPO-1.5B/model.safetensors: sha256 mismatch",
        f"GRPO-1.5B/model.safetensors: size {good.size} != {good.size + 1}",
        "SofT-GRPO-7B/config.json: missing",
    ]
    assert ck.verify_files(tmp_path, [missing], include=["GRPO-*"]) == []
