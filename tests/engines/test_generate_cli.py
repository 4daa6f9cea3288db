"""Tests for ``python -m soft_thinking.generate`` (in-process via ``main(argv)`` and as a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from soft_thinking.generate import main

BASE = ["--model", "tiny-qwen2", "--prompt", "What is 2+3?", "--prompt", "hi", "--max-new-tokens", "24",
        "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[list[dict], dict]:
    assert main([*argv, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[-1]["type"] == "summary"
    return lines[:-1], lines[-1]


@pytest.mark.parametrize("mode", ["soft", "discrete"])
def test_json_output_parses_and_is_consistent(capsys: pytest.CaptureFixture[str], mode: str) -> None:
    samples, summary = run_json(capsys, [*BASE, "--mode", mode, "--n", "3", "--seed", "4"])
    assert len(samples) == summary["samples"] == 6
    assert [(s["prompt_index"], s["sample_index"]) for s in samples] == [(p, i) for p in range(2) for i in range(3)]
    assert summary["generated_tokens"] == sum(s["num_tokens"] for s in samples)
    assert summary["think_end_token_ids"] == [5]  # "</think>" is one token of the char tokenizer
    for s in samples:
        assert 1 <= s["num_tokens"] <= 24
        assert s["finish_reason"] in ("eos", "length")
        assert s["mean_logprob"] < 0 and s["tokens_per_s"] > 0
        if mode == "soft":
            assert s["soft_share"] > 0
            assert s["num_thinking_tokens"] >= 1
        else:
            assert s["soft_share"] == 0.0 and s["single_candidate_share"] == 0.0
    # same seed -> same output; another seed -> different output
    again, _ = run_json(capsys, [*BASE, "--mode", mode, "--n", "3", "--seed", "4"])
    assert [s["text"] for s in again] == [s["text"] for s in samples]
    other, _ = run_json(capsys, [*BASE, "--mode", mode, "--n", "3", "--seed", "5"])
    assert [s["text"] for s in other] != [s["text"] for s in samples]


def test_multi_token_think_end_and_cold_stop(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*BASE, "--think-end", "END", "--cold-stop-threshold", "100", "--cold-stop-length", "3"]
    samples, summary = run_json(capsys, argv)
    assert len(summary["think_end_token_ids"]) == 3  # "END" is three characters
    for s in samples:
        assert s["cold_stopped"]
        assert s["num_thinking_tokens"] == 2 + 3  # 2 soft steps, then the 3 forced pieces
        assert s["soft_share"] == pytest.approx(2 / s["num_tokens"])
        assert s["text"][2:5] == "END" and s["thinking"] == s["text"][:2]


def test_soft_until_eos_greedy_and_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    samples, _ = run_json(capsys, [*BASE, "--soft-until-eos", "--temperature", "0", "--noise", "none"])
    for s in samples:
        assert s["soft_share"] == 1.0 and s["answer"] == ""
        assert s["mean_logprob"] == 0.0  # a deterministic mixture has no density
    assert main([*BASE, "--no-chat-template", "--after-thinking-temperature", "0.5"]) == 0
    out = capsys.readouterr().out
    assert out.count("=== prompt") == 2 and "tokens/s" in out and "single-candidate share" in out


def test_bad_arguments_exit_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--max-topk", "500"]) == 2
    assert "max_topk=500" in capsys.readouterr().err
    assert main([*BASE, "--tau", "0"]) == 2
    assert "gumbel_softmax_temperature" in capsys.readouterr().err
    assert main(["--model", "/no/such/folder", "--prompt", "x"]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "tiny-qwen2", "--prompt", "x", "--mode", "fuzzy"])


def test_original_flag_spellings_set_the_config() -> None:
    from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer
    from soft_thinking.generate import build_config, build_parser

    _, tok = tiny_model_and_tokenizer("qwen2")
    args = build_parser().parse_args([
        "--model", "m", "--prompt", "x", "--max_topk", "3", "--gumbel_softmax_temperature", "0.5",
        "--noise_factor", "0.5", "--after_thinking_top_p", "0.8", "--cold-stop-length", "7",
    ])
    cfg = build_config(args, tok)
    assert (cfg.max_topk, cfg.gumbel_softmax_temperature, cfg.noise_factor) == (3, 0.5, 0.5)
    assert (cfg.after_thinking_top_p, cfg.early_stopping_length_threshold) == (0.8, 7)
    assert cfg.top_p == 0.95 and cfg.think_end_token_ids == (5,)  # defaults come from the config


def test_module_entry_point_runs_as_subprocess() -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "soft_thinking.generate", *BASE, "--n", "2", "--json"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [line["type"] for line in lines] == ["sample"] * 4 + ["summary"]


# -- issue 17: every value checked before the model loads ------------------------------------------
@pytest.mark.parametrize(("flags", "named"), [
    (["--threads", "0"], "--threads=0"),
    (["--batch-size", "0"], "--batch-size=0"),
    (["--n", "0"], "--n=0"),
    (["--max-new-tokens", "0"], "--max-new-tokens=0"),
    (["--seed", "-1"], "--seed=-1"),
    (["--device", "gpu"], "--device='gpu'"),
    (["--device", "5"], "--device='5'"),
    (["--device", "cuda:99"], "--device='cuda:99'"),
    (["--top-p", "1.5"], "top_p=1.5"),
    (["--tau", "nan"], "gumbel_softmax_temperature"),
    (["--temperature", "inf"], "temperature=inf"),
    (["--think-end", ""], "--think-end=''"),
    (["--stop", ""], "--stop=''"),
    (["--dtype", "int8"], "invalid choice: 'int8'"),
    (["--threads", "abc"], "invalid int value: 'abc'"),
])
def test_bad_value_is_one_error_line_before_the_model_loads(capsys, monkeypatch, flags, named) -> None:
    import soft_thinking.generate as gen

    monkeypatch.setattr(gen, "load", lambda *a, **k: pytest.fail("the model was loaded for a bad value"))
    try:
        code = main([*BASE, *flags])
    except SystemExit as exc:  # argparse's own checks (types, choices)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err


def test_damaged_model_folder_is_named_before_loading(tmp_path, capsys, monkeypatch) -> None:
    import soft_thinking.generate as gen
    from soft_thinking.engines.hf.models import MODEL_REGISTRY

    src = MODEL_REGISTRY["tiny-qwen2"](tmp_path / "cache")
    capsys.readouterr()  # the save's progress bar
    monkeypatch.setattr(gen, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    for damage in ("config.json", "model.safetensors"):
        m = tmp_path / f"m-{damage}"
        m.mkdir()
        for f in src.iterdir():
            (m / f.name).write_bytes(f.read_bytes())
        data = (m / damage).read_bytes()
        (m / damage).write_bytes(data[: len(data) // 2])
        assert main(["--model", str(m), "--prompt", "x"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and str(m / damage) in err[0], err
