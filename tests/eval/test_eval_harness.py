"""Harness end to end through a fake backend: outputs, resume, settings checks, compare, CLI."""

import json

import pytest

from eval.backends import Completion
from eval.benchmarks import BenchmarkError, Problem, load_local
from eval.cli import main
from eval.rundir import RunConfigMismatch, RunDir
from eval.runner import RunSpec, run_eval
from eval.settings import SamplingSettings, SettingsError, problem_seed


class FakeBackend:
    """Deterministic completions: sample j answers the gold when j is even, else gold + 1.

    Records every (prompt, n, seed) call so tests can check resume and seeding.
    """

    def __init__(self, golds: dict[str, int]):
        self.golds = golds
        self.calls: list[tuple[str, int, int]] = []

    def format_prompt(self, user_problem, template="{problem}"):
        return "<user>" + template.format(problem=user_problem) + "<assistant>"

    def generate(self, prompts, n, seeds):
        out = []
        for prompt, seed in zip(prompts, seeds):
            self.calls.append((prompt, n, seed))
            gold = self.golds[prompt]
            out.append([
                Completion(text=f"<think>{'x' * j}</think> \\boxed{{{gold if j % 2 == 0 else gold + 1}}}",
                           num_tokens=10 + j, num_thinking_tokens=j, soft_share=0.5, finish_reason="stop")
                for j in range(n)
            ])
        return out


PROBLEMS = {"aime2024": [Problem("aime2024", 0, "What is 6*7?", "42"), Problem("aime2024", 1, "1+1?", "2")]}


def _backend():
    from eval.prompts import DEFAULT_TEMPLATE

    fb = FakeBackend({})
    fb.golds = {fb.format_prompt(p.problem, DEFAULT_TEMPLATE): int(p.gold) for p in PROBLEMS["aime2024"]}
    return fb


def _spec(tmp_path, **kw):
    base = {"run_dir": tmp_path / "run", "fingerprint": {"model": "fake", "sampling": {"temperature": 0.6}},
            "num_samples": 4, "n_boot": 200}
    base.update(kw)
    return RunSpec(**base)


def test_end_to_end_writes_outputs_and_resume_skips_everything(tmp_path):
    fb = _backend()
    summary = run_eval(_spec(tmp_path), PROBLEMS, fb)
    run = tmp_path / "run"
    for name in ("samples.jsonl", "summary.json", "summary.md", "passk.png", "config.json"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    lines = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    assert {(r["problem_id"], r["sample_index"]) for r in lines} == {(p, j) for p in (0, 1) for j in range(4)}
    assert [r["correct"] for r in lines if r["problem_id"] == 0] == [True, False, True, False]
    assert all(r["grade_status"] == "ok" for r in lines)
    assert lines[0]["seed"] == problem_seed(0, "aime2024", 0)
    b = summary["benchmarks"]["aime2024"]
    assert b["mean_at_n"]["value"] == pytest.approx(0.5)
    # n=4, c=2: Pass@2 = 1 - C(2,2)/C(4,2) = 5/6; first-k Pass@1 = 1 (sample 0 is right)
    assert b["pass_at_k"]["2"]["value"] == pytest.approx(5 / 6)
    assert b["pass_at_k"]["4"]["value"] == pytest.approx(1.0)
    assert b["pass_at_k_first_k"]["1"]["value"] == pytest.approx(1.0)
    assert b["avg_tokens"] == pytest.approx(11.5) and b["avg_tokens_correct"] == pytest.approx(11.0)
    assert b["grade_status"] == {"ok": 8, "no_answer": 0, "parse_error": 0, "timeout": 0, "no_think_end": 0, "error": 0}
    assert json.loads((run / "summary.json").read_text())["benchmarks"]["aime2024"]["num_problems"] == 2
    assert "Pass@2" in (run / "summary.md").read_text()
    assert (run / "passk.png").read_bytes()[:4] == b"\x89PNG"

    fb2 = _backend()
    again = run_eval(_spec(tmp_path), PROBLEMS, fb2)
    assert fb2.calls == []
    assert len((run / "samples.jsonl").read_text().splitlines()) == 8
    assert again["benchmarks"] == summary["benchmarks"]


def test_resume_after_kill_generates_only_missing_with_same_seeds(tmp_path):
    fb = _backend()
    run_eval(_spec(tmp_path), PROBLEMS, fb)
    path = tmp_path / "run" / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    # drop problem 1 sample 3 and leave a half-written line, as a killed run would
    kept = [x for x in lines if not (json.loads(x)["problem_id"] == 1 and json.loads(x)["sample_index"] == 3)]
    path.write_text("".join(kept) + '{"benchmark": "aime2')
    fb2 = _backend()
    run_eval(_spec(tmp_path), PROBLEMS, fb2)
    assert [(n, s) for _, n, s in fb2.calls] == [(4, problem_seed(0, "aime2024", 1))]
    recs = RunDir(tmp_path / "run").load_samples()
    assert len(recs) == 8 and recs[("aime2024", 1, 3)]["correct"] is False


def test_more_samples_extend_the_run(tmp_path):
    run_eval(_spec(tmp_path), PROBLEMS, _backend())
    fb = _backend()
    s = run_eval(_spec(tmp_path, num_samples=6), PROBLEMS, fb)
    assert [n for _, n, _ in fb.calls] == [6, 6]
    assert len(RunDir(tmp_path / "run").load_samples()) == 12
    assert s["benchmarks"]["aime2024"]["pass_at_k"]["4"]["value"] == pytest.approx(1.0)


def test_resume_with_different_settings_is_refused(tmp_path):
    run_eval(_spec(tmp_path), PROBLEMS, _backend())
    other = _spec(tmp_path, fingerprint={"model": "fake", "sampling": {"temperature": 1.0}})
    with pytest.raises(RunConfigMismatch, match=r"sampling.temperature: 0.6 != 1.0"):
        run_eval(other, PROBLEMS, _backend())


def test_cli_run_and_compare(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "gsm8k.json").write_text(json.dumps([
        {"prompt": [{"from": "user", "value": "2+2?"}], "final_answer": 4},
        {"prompt": [{"from": "user", "value": "3+3?"}], "final_answer": "6"},
        {"prompt": [{"from": "user", "value": "unused"}], "final_answer": "0"},
    ]))
    made = []

    def factory(args, settings):
        assert settings.temperature == 0.7 and settings.noise == "gumbel"
        fb = FakeBackend({})
        fb.golds = {fb.format_prompt(q, "Q: {problem}"): a for q, a in (("2+2?", 4), ("3+3?", 6))}
        made.append(fb)
        return fb

    base = ["run", "--model", "fake", "--benchmarks", "gsm8k", "--data-dir", str(data), "--output-dir",
            str(tmp_path / "out"), "--limit", "2", "--num_samples", "2", "--prompt-template", "Q: {problem}",
            "--enable_soft_thinking", "--add_noise_gumbel_softmax", "--n-boot", "100"]
    assert main(base + ["--run-name", "a", "--temperature", "0.7"], backend_factory=factory) == 0
    assert main(base + ["--run-name", "b", "--temperature", "0.7", "--top_p", "0.9"], backend_factory=factory) == 0
    assert len(made[0].calls) == 2
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "out" / "a"), str(tmp_path / "out" / "b")]) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "sampling.top_p: 0.95 != 0.9" in out
    assert "gsm8k" in out and "mean@n" in out and "+0.00" in out
    # resume into "a" with another temperature: clear error, no backend built
    assert main(base + ["--run-name", "a", "--temperature", "0.9"], backend_factory=factory) == 2
    assert "refusing to resume" in capsys.readouterr().err and len(made) == 2


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert main(["run", "--model", "m", "--benchmarks", "mmlu", "--data-dir", str(tmp_path)]) == 2
    assert "allowed a comma list" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="at most one of"):
        SamplingSettings(add_noise_gumbel_softmax=True, add_noise_dirichlet=True).validate()
    bad = tmp_path / "aime2024.json"
    bad.write_text(json.dumps([{"prompt": "oops", "final_answer": "1"}]))
    with pytest.raises(BenchmarkError, match="record 0"):
        load_local("aime2024", tmp_path)
    assert main(["run", "--model", "m", "--benchmarks", "gsm8k", "--data-dir", str(tmp_path),
                 "--backend", "sglang"]) == 2
    assert "benchmark file" in capsys.readouterr().err
