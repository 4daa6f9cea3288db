"""`python -m eval run` checks every value before it writes or loads anything, and a user error is one
`error:` line with exit status 2 (issue 8 §4.6, §4.7, §4.8)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.cli import main

REPO = Path(__file__).resolve().parents[2]


def no_backend(*_a, **_k):
    raise AssertionError("the model must not be loaded for invalid input")


def write_bench(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "gsm8k.json").write_text(json.dumps([{"prompt": [{"from": "user", "value": "1+1?"}], "final_answer": "2"}]))
    return data


def run(tmp_path: Path, *flags: str, factory=no_backend) -> int:
    argv = ["run", "--model", "m", "--benchmarks", "gsm8k", "--data-dir", str(write_bench(tmp_path)),
            "--output-dir", str(tmp_path / "out"), "--run-name", "r", *flags]
    return main(argv, backend_factory=factory)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(("flags", "named"), [
    (["--num_samples", "0"], "--num_samples=0"),
    (["--n-boot", "0"], "--n-boot=0"),
    (["--threads", "0"], "--threads=0"),
    (["--grade-workers", "0"], "--grade-workers=0"),
    (["--grade-timeout", "0"], "--grade-timeout=0"),
    (["--limit", "0"], "--limit=0"),
    (["--top_p", "1.5"], "--top_p=1.5"),
    (["--temperature", "-1"], "--temperature=-1"),
    (["--max_topk", "0"], "--max_topk=0"),
    (["--top_k", "0"], "--top_k=0"),
    (["--min_p", "1.0"], "--min_p=1.0"),
    (["--gumbel_softmax_temperature", "0"], "--gumbel_softmax_temperature=0"),
    (["--max_generated_tokens", "0"], "--max_generated_tokens=0"),
    (["--seed", "-1"], "--seed=-1"),
    (["--add_noise_gumbel_softmax", "--add_noise_dirichlet"], "at most one"),
])
def test_bad_value_is_rejected_before_anything_is_written(tmp_path, capsys, flags, named) -> None:
    assert run(tmp_path, *flags) == 2
    assert named in one_error_line(capsys)
    assert not (tmp_path / "out" / "r" / "config.json").exists()


def test_corrected_retry_after_a_bad_value_is_not_refused(tmp_path, capsys) -> None:
    assert run(tmp_path, "--top_p", "1.5") == 2
    calls = []

    def factory(args, settings):
        calls.append(settings.top_p)
        raise AssertionError("stop after the resume check")

    with pytest.raises(AssertionError, match="stop after"):
        run(tmp_path, "--top_p", "0.9", factory=factory)
    assert calls == [0.9]  # reached the model: the run folder did not hold the bad value


def test_corrupt_benchmark_json_names_the_file(tmp_path, capsys) -> None:
    data = write_bench(tmp_path)
    (data / "gsm8k.json").write_text('[{"prompt": [')
    assert main(["run", "--model", "m", "--benchmarks", "gsm8k", "--data-dir", str(data),
                 "--output-dir", str(tmp_path / "out")], backend_factory=no_backend) == 2
    assert str(data / "gsm8k.json") in one_error_line(capsys)


def test_missing_model_and_missing_run_are_one_error_line(tmp_path, capsys) -> None:
    missing = tmp_path / "no-model"
    assert main(["run", "--model", str(missing), "--benchmarks", "gsm8k", "--data-dir", str(write_bench(tmp_path)),
                 "--output-dir", str(tmp_path / "out"), "--num_samples", "1"]) == 2
    assert str(missing) in one_error_line(capsys)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "run directory" in one_error_line(capsys)


def test_module_entry_point_exits_2_without_a_traceback(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "eval", "run", "--model", str(tmp_path / "no-model"),
                           "--benchmarks", "gsm8k", "--data-dir", str(write_bench(tmp_path)),
                           "--output-dir", str(tmp_path / "out"), "--num_samples", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == [
        ln for ln in proc.stderr.splitlines() if "no-model" in ln]


def test_checkpoints_cli_error_is_one_line(monkeypatch, capsys) -> None:
    from eval import checkpoints

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert checkpoints.main(["list"]) == 2
    assert "offline" in one_error_line(capsys).lower()


def test_sglang_backend_without_sglang_is_one_clear_error() -> None:
    """Here sglang is not installed: the backend says what to install instead of failing inside it."""
    import importlib.util

    import pytest

    from eval.backends import BackendUnavailable, make_backend
    from eval.settings import SamplingSettings

    if importlib.util.find_spec("sglang") is not None:
        pytest.skip("sglang is installed: the GPU tests cover the backend")
    with pytest.raises(BackendUnavailable, match="--backend sglang needs sglang 0.5.12"):
        make_backend("sglang", "m", SamplingSettings())


def test_sglang_backend_gets_the_recorded_dtype(monkeypatch) -> None:
    """The run's config records --dtype, so SGLang must load the model in it (not in its "auto" default)."""
    import importlib.util

    from eval import backends
    from eval.settings import SamplingSettings

    seen = {}

    class Recorder:  # stands in for SGLangBackend, which needs CUDA; records what make_backend passes
        def __init__(self, model, settings, **kwargs) -> None:
            seen.update(kwargs, model=model)

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "sglang" else
                        real_find_spec(name, *a))
    monkeypatch.setattr(backends, "SGLangBackend", Recorder)
    backends.make_backend("sglang", "m", SamplingSettings(), device="cpu", dtype="bfloat16", batch_size=8)
    assert seen == {"model": "m", "dtype": "bfloat16", "batch_size": 8}
