"""The GPU check's plumbing on a CPU: statuses, the report written after every check, a failing or
crashing check not stopping the others, exit codes, and scripts/gpu_check.sh refusing without CUDA."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from bench import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def test_failures_are_recorded_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bad_bound(ctx):
        raise gpu_check.CheckFailed("parity 0.5 > 0.01", {"parity": 0.5})

    def crash(ctx):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(gpu_check.CHECKS, "bad_bound", bad_bound)
    monkeypatch.setitem(gpu_check.CHECKS, "crash", crash)
    out = tmp_path / "r.json"
    rc = gpu_check.main(["--device", "cpu", "--quick", "--only", "bad_bound,crash,rng_bits,cudagraph_step",
                         "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 1 and report["failed"] == ["bad_bound", "crash"] and not report["ok"] and report["complete"]
    checks = report["checks"]
    assert checks["bad_bound"]["status"] == "fail" and checks["bad_bound"]["numbers"] == {"parity": 0.5}
    assert checks["crash"]["status"] == "error" and "RuntimeError: kernel exploded" in checks["crash"]["error"]
    assert checks["rng_bits"]["status"] == "pass" and checks["rng_bits"]["numbers"]["mismatches"] == 0
    assert checks["rng_bits"]["numbers"]["values"] == 32 * 64 * 36
    assert checks["cudagraph_step"]["status"] == "skip"  # CUDA graphs: not on a CPU
    assert all(c["wall_s"] >= 0 for c in checks.values())
    # all passing: exit 0
    rc = gpu_check.main(["--device", "cpu", "--quick", "--only", "rng_bits", "--out", str(out)])
    assert rc == 0 and json.loads(out.read_text())["ok"]


def test_partial_report_is_written_after_each_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.json"

    def stop(ctx):  # a run killed by the time limit: what finished before is on disk
        assert json.loads(out.read_text())["checks"]["rng_bits"]["status"] == "pass"
        raise KeyboardInterrupt

    monkeypatch.setitem(gpu_check.CHECKS, "stop", stop)
    with pytest.raises(KeyboardInterrupt):
        gpu_check.main(["--device", "cpu", "--quick", "--only", "rng_bits,stop", "--out", str(out)])
    report = json.loads(out.read_text())
    assert not report["complete"] and report["not_run"] == ["stop"] and not report["ok"]


def test_bad_arguments_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.json"
    assert gpu_check.main(["--device", "tpu", "--out", str(out)]) == 2
    assert "error: --device='tpu': allowed 'cuda' or 'cpu'" in capsys.readouterr().err
    assert gpu_check.main(["--device", "cpu", "--only", "rng_bits,nope", "--out", str(out)]) == 2
    assert "unknown check(s) ['nope']" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert gpu_check.main(["--device", "cuda", "--out", str(out)]) == 2
        assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not out.exists()
    assert set(gpu_check.ORDER) == set(gpu_check.CHECKS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_shell_script_refuses_without_cuda() -> None:
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("error: no CUDA device") and "--device cpu --quick" in res.stderr
    assert not res.stdout


@pytest.mark.slow
def test_every_check_passes_on_cpu_quick(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    rc = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, report["failed"]
    statuses = {n: c["status"] for n, c in report["checks"].items()}
    assert statuses == {**{n: "pass" for n in gpu_check.ORDER}, "cudagraph_step": "skip"}
    n = report["checks"]
    assert n["trainer_update_bf16"]["numbers"]["dtype"] == "torch.bfloat16"
    assert n["sglang_table_step"]["numbers"]["packed_row_bytes"] == 8 * 32 + 7
    cli = n["train_cli_resume"]["numbers"]  # the trainer's CLI: a checkpoint at step 2, resumed for step 3
    assert cli["steps_logged"] == [1, 2, 3] and cli["resumed_message"] and cli["first_minibatch_log_ratio_max"] == 0.0
