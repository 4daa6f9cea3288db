"""Issue 17: `python -m eval run|compare` on bad input. Every case: exit status 2, exactly one `error:`
line naming the field, and the output folder exactly as it was (nothing created, nothing changed).

Classes: types and ranges (1), writes before validation (2), paths and run names (3), damaged state
(6), silent reinterpretation (8). Concurrency (5) and bounded grading through the CLI (7) at the end;
the subprocess versions of each class are in test_eval_cli_subprocess.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.cli import main
from soft_thinking.runlock import hold_run_lock


def no_backend(*_a, **_k):
    raise AssertionError("the model must not be loaded for invalid input")


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders); {} when root does not exist."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "gsm8k.json").write_text(json.dumps([{"prompt": [{"from": "user", "value": "1+1?"}], "final_answer": "2"},
                                              {"prompt": [{"from": "user", "value": "2+2?"}], "final_answer": "4"}]))
    return d


def argv(tmp_path: Path, data: Path, *flags: str, model: str = "m", name: str | None = "r") -> list[str]:
    out = ["run", "--model", model, "--benchmarks", "gsm8k", "--data-dir", str(data), "--output-dir",
           str(tmp_path / "out"), "--num_samples", "2", "--n-boot", "10"]
    return out + (["--run-name", name] if name is not None else []) + list(flags)


def expect_refused(tmp_path, data, capsys, flags, named, *, model="m", name="r", factory=no_backend) -> str:
    before = snapshot(tmp_path / "out")
    code = None
    try:
        code = main(argv(tmp_path, data, *flags, model=model, name=name), backend_factory=factory)
    except SystemExit as exc:  # argparse's own type / choice checks
        code = exc.code
    assert code == 2
    line = one_error_line(capsys)
    assert named in line, line
    assert snapshot(tmp_path / "out") == before
    return line


def preset(tmp_path: Path, text: str) -> str:
    p = tmp_path / "preset.yaml"
    p.write_text(text)
    return str(p)


# (1) types, ranges, enums -------------------------------------------------------------------------
VALUE_CASES = [
    (["--threads", "0"], "--threads=0"), (["--threads", "abc"], "invalid int value: 'abc'"),
    (["--grade-timeout", "inf"], "--grade-timeout=inf"), (["--grade-timeout", "nan"], "--grade-timeout=nan"),
    (["--grade-timeout", "-1"], "--grade-timeout=-1"), (["--grade-workers", "0"], "--grade-workers=0"),
    (["--n-boot", "0"], "--n-boot=0"), (["--limit", "0"], "--limit=0"), (["--num_samples", "0"], "--num_samples=0"),
    (["--device", "gpu"], "--device='gpu'"), (["--device", "5"], "--device='5'"),
    (["--device", "cuda:99"], "--device='cuda:99'"), (["--dtype", "int8"], "invalid choice: 'int8'"),
    (["--backend", "tgi"], "invalid choice: 'tgi'"), (["--temperature", "nan"], "--temperature=nan"),
    (["--top_p", "inf"], "--top_p=inf"), (["--top_p", "1.5"], "--top_p=1.5"), (["--min_p", "1.0"], "--min_p=1.0"),
    (["--gumbel_softmax_temperature", "0"], "--gumbel_softmax_temperature=0"), (["--seed", "-1"], "--seed=-1"),
    (["--max_generated_tokens", "1.5"], "invalid int value: '1.5'"),
    (["--add_noise_gumbel_softmax", "--add_noise_dirichlet"], "at most one"),
    (["--prompt-template", "{x}"], "--prompt-template"), (["--prompt-template", "no field"], "{problem}"),
    (["--think-end", ""], "--think-end=''"), (["--benchmarks", "mmlu"], "mmlu"), (["--bogus", "1"], "--bogus"),
]


@pytest.mark.parametrize(("flags", "named"), VALUE_CASES)
def test_bad_value_is_refused_before_any_write(tmp_path, data, capsys, flags, named) -> None:
    expect_refused(tmp_path, data, capsys, flags, named)


def test_cuda_on_a_cpu_only_torch_names_the_build(tmp_path, data, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    assert "CPU-only" in expect_refused(tmp_path, data, capsys, ["--device", "cuda"], "--device='cuda'")


PRESET_CASES = [
    ("add_noise_gumbel_softmax: 'false'\n", "add_noise_gumbel_softmax='false'"),  # YAML string, not a boolean
    ("enable_soft_thinking: 'no'\n", "enable_soft_thinking='no'"),
    ("temperature: .inf\n", "--temperature=inf"),
    ("max_topk: 2.5\n", "--max_topk=2.5"),
    ("seed: '3'\n", "--seed='3'"),
    ("num_samples: '4'\n", "--num_samples='4'"),
    ("num_samples: 0\n", "num_samples=0"),
    ("benchmarks: 7\n", "benchmarks=7"),
    ("prompt_template: 5\n", "--prompt-template=5"),
    ("temprature: 1.0\n", "unknown key"),
    ("- a\n- b\n", "must be a mapping"),
    ("a: [\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "named"), PRESET_CASES)
def test_bad_preset_value_is_refused(tmp_path, data, capsys, text, named) -> None:
    expect_refused(tmp_path, data, capsys, ["--preset", preset(tmp_path, text)], named)


def test_missing_preset_and_data_dir(tmp_path, data, capsys) -> None:
    expect_refused(tmp_path, data, capsys, ["--preset", str(tmp_path / "nope.yaml")], "no such file")
    expect_refused(tmp_path, data, capsys, ["--data-dir", str(tmp_path / "nodata")], "--data-dir")


# (3) paths: run names are names ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "a/b", "/abs/run", ".hidden", "..", ".", "", "a\\b"])
def test_run_name_that_is_a_path_is_refused(tmp_path, data, capsys, name) -> None:
    expect_refused(tmp_path, data, capsys, [], "--run-name", name=name)
    assert not (tmp_path / "x").exists() and not Path("/abs/run").exists()


def test_run_name_derived_from_an_odd_model_path_is_refused(tmp_path, data, capsys) -> None:
    expect_refused(tmp_path, data, capsys, [], "pass --run-name", model=".", name=None)


def test_output_dir_that_is_a_file_is_refused(tmp_path, data, capsys) -> None:
    (tmp_path / "out").write_text("not a folder")
    expect_refused(tmp_path, data, capsys, [], "--output-dir")


# (2) the model is checked before anything is created --------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from soft_thinking.engines.hf.models import MODEL_REGISTRY

    return MODEL_REGISTRY["tiny-qwen2"](tmp_path_factory.mktemp("cache"))


def damaged_copy(src: Path, dst: Path, damage: str | None) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    if damage is not None:
        data = (dst / damage).read_bytes()
        (dst / damage).write_bytes(data[: len(data) // 2])
    return dst


def test_typo_model_creates_nothing_and_the_corrected_rerun_runs(tmp_path, data, capsys, tiny_model) -> None:
    expect_refused(tmp_path, data, capsys, [], "is not a directory", model=str(tmp_path / "typo"), factory=None)
    assert not (tmp_path / "out").exists()
    good = damaged_copy(tiny_model, tmp_path / "model", None)
    assert main(argv(tmp_path, data, "--max_generated_tokens", "4", "--limit", "1", model=str(good))) == 0
    assert json.loads((tmp_path / "out" / "r" / "config.json").read_text())["model"] == str(good)


@pytest.mark.parametrize(("damage", "named"), [("config.json", "does not load as a model config"),
                                               ("model.safetensors", "is damaged"),
                                               ("tokenizer_config.json", "is not valid JSON"),
                                               ("tokenizer.json", "is not valid JSON")])
def test_damaged_model_folder_is_refused_before_the_run_folder_exists(tmp_path, data, capsys, tiny_model,
                                                                       damage, named) -> None:
    model = damaged_copy(tiny_model, tmp_path / "model", damage)
    line = expect_refused(tmp_path, data, capsys, [], named, model=str(model), factory=None)
    assert str(model / damage) in line
    assert not (tmp_path / "out").exists()


def test_folder_without_config_is_refused(tmp_path, data, capsys) -> None:
    (tmp_path / "empty").mkdir()
    expect_refused(tmp_path, data, capsys, [], "no config.json", model=str(tmp_path / "empty"), factory=None)


# (6) damaged state of an existing run ------------------------------------------------------------------
class Backend:
    """Answers every problem right; ``text`` overrides the completion."""

    def __init__(self, text: str | None = None) -> None:
        self.text = text

    def format_prompt(self, problem, template):
        return problem

    def generate(self, prompts, n, seeds):
        from eval.backends import Completion

        gold = {"1+1?": 2, "2+2?": 4}
        return [[Completion(self.text or f"</think>\\boxed{{{gold[p]}}}", 3) for _ in range(n)] for p in prompts]


def make_run(tmp_path: Path, data: Path) -> Path:
    assert main(argv(tmp_path, data), backend_factory=lambda *a: Backend()) == 0
    return tmp_path / "out" / "r"


@pytest.mark.parametrize(("damage", "named"), [
    (lambda rd: (rd / "config.json").write_text('{"model": "m", "samp'), "config.json"),
    (lambda rd: (rd / "config.json").write_text("[1, 2]"), "not a JSON object"),
    (lambda rd: _edit_line(rd, 1, "{not json"), "samples.jsonl:2"),
    (lambda rd: _edit_line(rd, 2, json.dumps({"benchmark": "gsm8k", "problem_id": 1})), "samples.jsonl:3: sample has no"),
    (lambda rd: _edit_line(rd, 0, json.dumps({**_line(rd, 0), "correct": "yes"})), "correct='yes'"),
    (lambda rd: _edit_line(rd, 0, json.dumps({**_line(rd, 0), "sample_index": -1})), "sample_index=-1"),
    (lambda rd: (rd / "config.json").unlink(), "does not"),
    (lambda rd: (rd / "samples.jsonl").write_bytes(b"\xff\xfe\n"), "not UTF-8"),
])
def test_damaged_run_is_refused_naming_the_file_and_kept(tmp_path, data, capsys, damage, named) -> None:
    rd = make_run(tmp_path, data)
    capsys.readouterr()
    damage(rd)
    expect_refused(tmp_path, data, capsys, [], named)


def _line(rd: Path, i: int) -> dict:
    return json.loads((rd / "samples.jsonl").read_text().splitlines()[i])


def _edit_line(rd: Path, i: int, text: str) -> None:
    lines = (rd / "samples.jsonl").read_text().splitlines()
    lines[i] = text
    (rd / "samples.jsonl").write_text("\n".join(lines) + "\n")


def test_torn_last_line_is_set_aside_not_deleted(tmp_path, data, capsys) -> None:
    rd = make_run(tmp_path, data)
    lines = (rd / "samples.jsonl").read_text().splitlines()
    (rd / "samples.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])  # killed mid-write
    assert main(argv(tmp_path, data), backend_factory=lambda *a: Backend()) == 0
    assert (rd / "samples.jsonl").read_text().splitlines() == lines  # the missing sample drawn again
    assert (rd / "samples.jsonl.torn").read_text() == lines[-1][:25] + "\n"


@pytest.mark.parametrize(("damage", "named"), [
    ("{", "summary.json"), ("[]", "not a JSON object"), ('{"num_samples": 2}', "'benchmarks' is not an object"),
    ('{"num_samples": 2, "benchmarks": {"gsm8k": {"mean_at_n": {"value": "x"}}}}', "mean_at_n"),
])
def test_compare_with_a_corrupt_summary_is_one_error_line(tmp_path, data, capsys, damage, named) -> None:
    rd = make_run(tmp_path, data)
    other = tmp_path / "out" / "r2"
    other.mkdir()
    for f in ("summary.json", "config.json"):
        (other / f).write_bytes((rd / f).read_bytes())
    (other / "summary.json").write_text(damage)
    capsys.readouterr()
    assert main(["compare", str(rd), str(other)]) == 2
    line = one_error_line(capsys)
    assert named in line and str(other / "summary.json") in line


# (8) reject what will not be honoured -------------------------------------------------------------------
def test_resume_with_other_settings_is_refused_before_the_model(tmp_path, data, capsys) -> None:
    make_run(tmp_path, data)
    expect_refused(tmp_path, data, capsys, ["--temperature", "0.9"], "refusing to resume")


# (5) one run per folder ----------------------------------------------------------------------------------
def test_second_run_into_a_locked_folder_fails_naming_the_holder(tmp_path, data, capsys) -> None:
    rd = make_run(tmp_path, data)
    capsys.readouterr()
    with hold_run_lock(rd):
        before = snapshot(tmp_path / "out")
        assert main(argv(tmp_path, data, "--num_samples", "3"), backend_factory=lambda *a: no_backend()) == 2
        line = one_error_line(capsys)
        assert "in use by pid" in line and str(rd) in line
        assert snapshot(tmp_path / "out") == before
    assert main(argv(tmp_path, data, "--num_samples", "3"), backend_factory=lambda *a: Backend()) == 0  # released


def test_failed_start_into_a_new_folder_leaves_nothing(tmp_path, data, capsys) -> None:
    def broken(*_a):
        from soft_thinking.engines.hf.models import ModelLoadError

        raise ModelLoadError("weights could not be read")

    out = tmp_path / "out" / "deeper"
    assert main([*argv(tmp_path, data), "--output-dir", str(out)], backend_factory=broken) == 2
    assert "weights could not be read" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()  # run folder, lock file and the created parents are gone


# (7) grading through the CLI: one megabyte answer fails alone ---------------------------------------------
def test_megabyte_completion_is_one_failed_sample_not_a_failed_run(tmp_path, data, capsys) -> None:
    texts = iter(["</think>\\boxed{" + "x^" * (1 << 19) + "1}", None])

    class Mixed(Backend):
        def generate(self, prompts, n, seeds):
            out = super().generate(prompts, n, seeds)
            out[0][0] = out[0][0].__class__(next(texts) or out[0][0].text, 3)
            return out

    assert main(argv(tmp_path, data, "--limit", "2"), backend_factory=lambda *a: Mixed()) == 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "r" / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["grade_status"] for r in rows) == ["ok", "ok", "ok", "parse_error"]
    assert sum(r["correct"] for r in rows) == 3
    bad = next(r for r in rows if r["grade_status"] == "parse_error")
    assert len(bad["extracted"]) < 2100  # the record keeps a clipped answer, the text as generated
    assert "1 parse_error" in capsys.readouterr().out


# (4) safe loading: custom model code stays off unless the user passes --trust-remote-code -----------------
@pytest.mark.parametrize(("flags", "expected"), [([], False), (["--trust-remote-code"], True)])
def test_trust_remote_code_is_off_unless_passed(tmp_path, data, monkeypatch, tiny_model, flags, expected) -> None:
    from soft_thinking.engines.hf import models

    seen = []
    real_load = models.load_model

    def fake_load(name, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        raise models.ModelLoadError("stop here")

    monkeypatch.setattr(models, "load_model", fake_load)
    assert main(argv(tmp_path, data, *flags, model=str(tiny_model))) == 2
    assert seen == [expected]
    assert not (tmp_path / "out").exists()
    with pytest.raises(models.ModelLoadError, match="trust_remote_code='false'"):
        real_load(str(tiny_model), trust_remote_code="false")
