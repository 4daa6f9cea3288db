"""Checkpoint download helper: offline errors, local resolution, verification."""

import hashlib
import json

import pytest

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
        (d / "model.safetensors").write_bytes(b"weights-" + name.encode())
    (root / "README.md").write_text("hi")


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
