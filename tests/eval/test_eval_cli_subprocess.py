"""Issue 17 through the real command lines (subprocesses): one case per class of bad input for
`python -m eval run|compare`, `python -m eval.checkpoints`, `python -m soft_thinking.generate` and the
sample / download scripts -- exit status 2, exactly one `error:` line, no traceback, the output
folder unchanged -- and two concurrent `eval run` into one folder: exactly one runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def snapshot(root: Path) -> dict[str, bytes | None]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", SOFTGRPO_CACHE=str(tmp_path / "cache"), TQDM_DISABLE="1")


def refused(tmp_path: Path, cmd: list[str], named: str, watch: Path, cwd: Path | None = None,
            extra_env: dict[str, str] | None = None) -> str:
    before = snapshot(watch)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or tmp_path, timeout=300,
                          env={**env(tmp_path), **(extra_env or {})})
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert snapshot(watch) == before
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from soft_thinking.engines.hf.models import MODEL_REGISTRY

    return MODEL_REGISTRY["tiny-qwen2"](tmp_path_factory.mktemp("cache"))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    rows = [{"prompt": [{"from": "user", "value": f"{i}+1?"}], "final_answer": str(i + 1)} for i in range(3)]
    (d / "gsm8k.json").write_text(json.dumps(rows))
    return d


def eval_run(data: Path, out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "eval", "run", "--benchmarks", "gsm8k", "--data-dir", str(data),
            "--output-dir", str(out), "--n-boot", "10", *flags]


def copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_eval_run_classes_through_the_cli(tmp_path, data, tiny) -> None:
    out = tmp_path / "out"
    preset = tmp_path / "p.yaml"
    preset.write_text("enable_soft_thinking: true\nadd_noise_gumbel_softmax: 'false'\n")
    # (1) a string "false" for a boolean, (2) a typo'd model, (3) a run name that is a path
    refused(tmp_path, eval_run(data, out, "--model", "m", "--preset", str(preset)), "add_noise_gumbel_softmax='false'", out)
    refused(tmp_path, eval_run(data, out, "--model", str(tmp_path / "typo")), "is not a directory", tmp_path)
    refused(tmp_path, eval_run(data, out, "--model", str(tiny), "--run-name", "../../x"), "--run-name", tmp_path)
    refused(tmp_path, eval_run(data, out, "--model", str(tiny), "--device", "gpu"), "--device='gpu'", tmp_path)
    assert not out.exists()


def test_damaged_samples_and_summary_through_the_cli(tmp_path, data, tiny) -> None:
    out = tmp_path / "out"
    good = [*eval_run(data, out, "--model", str(tiny), "--run-name", "r", "--limit", "2", "--num_samples", "2",
                      "--max_generated_tokens", "4")]
    done = subprocess.run(good, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env(tmp_path))
    assert done.returncode == 0, done.stderr
    rd = out / "r"
    lines = (rd / "samples.jsonl").read_text().splitlines()
    (rd / "samples.jsonl").write_text("\n".join([lines[0], "{bad", *lines[2:]]) + "\n")  # (6) a bad middle line
    refused(tmp_path, good, f"{rd / 'samples.jsonl'}:2", out)
    (rd / "summary.json").write_text('{"num_samples": 2, "benchm')  # (6) a corrupt summary for compare
    refused(tmp_path, [sys.executable, "-m", "eval", "compare", str(rd), str(rd)], str(rd / "summary.json"), out)


def test_checkpoints_and_generate_through_the_cli(tmp_path, tiny) -> None:
    ck = tmp_path / "ck"
    copy_model(tiny, ck / "good")
    bad = copy_model(tiny, ck / "bad")
    (bad / "config.json").write_text('{"model_type": "qwen2"')  # (8) a corrupt config is not a usable model
    before = snapshot(ck)
    proc = subprocess.run([sys.executable, "-m", "eval.checkpoints", "locate", "--local-dir", str(ck)],
                          capture_output=True, text=True, timeout=300, env=env(tmp_path))
    assert proc.returncode == 0 and proc.stdout.splitlines() == [f"MODEL={(ck / 'good').resolve()}"], proc
    assert proc.stderr.startswith(f"skipped {bad.resolve()}") and snapshot(ck) == before
    refused(tmp_path, [sys.executable, "-m", "eval.checkpoints", "list", "--repo", "../etc"], "--repo='../etc'", tmp_path)
    gen = [sys.executable, "-m", "soft_thinking.generate", "--model", str(tiny), "--prompt", "x"]
    refused(tmp_path, [*gen, "--batch-size", "0"], "--batch-size=0", tmp_path)
    refused(tmp_path, [*gen, "--device", "cuda:7"], "--device='cuda:7'", tmp_path)


def test_sample_script_resolves_relative_paths_where_the_user_stands(tmp_path, data, tiny) -> None:
    script = str(REPO / "scripts" / "run_sample_gumbel.sh")
    here = tmp_path / "work"
    copy_model(tiny, here / "models" / "m")
    watch = tmp_path
    refused(tmp_path, ["bash", script], "MODEL is not set", watch, cwd=here, extra_env={"MODEL": ""})
    refused(tmp_path, ["bash", script], "BACKEND=tgi", watch, cwd=here,
            extra_env={"MODEL": "models/m", "BACKEND": "tgi"})
    refused(tmp_path, ["bash", script, "--num_samples", "0"], "--num_samples=0", watch, cwd=here,
            extra_env={"MODEL": "models/m", "OUTPUT_DIR": "res"})
    repo_results = snapshot(REPO / "results")
    proc = subprocess.run(["bash", script, "--benchmarks", "gsm8k", "--limit", "1", "--num_samples", "1",
                           "--max_generated_tokens", "4", "--n-boot", "10"], capture_output=True, text=True,
                          cwd=here, timeout=300,
                          env={**env(tmp_path), "MODEL": "models/m", "OUTPUT_DIR": "res", "DATA_DIR": "../data"})
    assert proc.returncode == 0, proc.stderr
    run = here / "res" / "m-gumbel"
    assert json.loads((run / "config.json").read_text())["model"] == "models/m"
    assert (run / "summary.json").is_file() and snapshot(REPO / "results") == repo_results


def test_download_script_checks_its_inputs(tmp_path) -> None:
    script = str(REPO / "scripts" / "download_checkpoints.sh")
    refused(tmp_path, ["bash", script, "list"], "--revision=''", tmp_path, extra_env={"REVISION": "", "HF_HUB_OFFLINE": "1"})
    refused(tmp_path, ["bash", script, "locate", "nowhere"], "nowhere does not exist", tmp_path)


def test_two_concurrent_runs_into_one_folder_exactly_one_runs(tmp_path, data, tiny) -> None:
    out = tmp_path / "out"
    cmd = eval_run(data, out, "--model", str(tiny), "--run-name", "r", "--limit", "2", "--num_samples", "16",
                   "--max_generated_tokens", "64", "--enable_soft_thinking", "--add_noise_gumbel_softmax")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env=env(tmp_path)) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    errors = [ln for ln in loser.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "is in use by pid" in errors[0] and "Traceback" not in loser
    rows = [json.loads(x) for x in (out / "r" / "samples.jsonl").read_text().splitlines()]
    keys = [(r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == 32 and len(set(keys)) == 32  # every sample written once
