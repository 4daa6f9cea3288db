"""``python -m eval run --backend vllm`` on GSM8K problems: the same Pass@k as the HF backend (same settings, same
per-problem seeds), discrete and soft. One vLLM backend is built through ``make_backend('vllm', ...)`` and reused
by both runs (engine start-up takes minutes on CPU); the HF runs use the CLI's own backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vllm_common import SKIP_REASON, VLLM_MISSING

from eval.cli import main

pytestmark = [pytest.mark.skipif(VLLM_MISSING, reason=SKIP_REASON), pytest.mark.slow]

COMMON = ["--model", "smollm2-135m", "--benchmarks", "gsm8k", "--limit", "3", "--num_samples", "4",
          "--max_generated_tokens", "48", "--n-boot", "100", "--top_k", "20"]
MODES = {
    "soft": ["--enable_soft_thinking", "--add_noise_gumbel_softmax", "--gumbel_softmax_temperature", "0.1"],
    "discrete": ["--temperature", "0"],
}


@pytest.fixture(scope="module")
def vllm_backend():
    from eval.backends import make_backend
    from eval.settings import SamplingSettings

    return make_backend("vllm", "smollm2-135m", SamplingSettings(max_generated_tokens=48), device="cpu",
                        dtype="float32", think_end="</think>", batch_size=16, max_model_len=640,
                        kv_cache_memory_bytes=46080 * 1024)


def _samples(run_dir: Path) -> dict:
    rows = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    return {(r["problem_id"], r["sample_index"]): r for r in rows}


# soft in the default run; discrete (greedy: argmax on both sides) is `extended`
@pytest.mark.parametrize("mode", ["soft", pytest.param("discrete", marks=pytest.mark.extended)])
def test_vllm_backend_matches_hf_backend(mode, tmp_path, benchmark_dir, vllm_backend, monkeypatch):
    from soft_thinking.engines.hf.engine import resolve_think_end

    monkeypatch.setenv("SOFTGRPO_CACHE", str(tmp_path / "cache"))
    args = [*COMMON, *MODES[mode], "--data-dir", str(benchmark_dir), "--output-dir", str(tmp_path)]

    def reuse(cli_args, settings):
        vllm_backend.config = settings.to_soft_thinking_config(
            tuple(resolve_think_end(vllm_backend.tokenizer, cli_args.think_end)))
        vllm_backend.max_new_tokens = settings.max_generated_tokens
        return vllm_backend

    assert main(["run", *args, "--backend", "vllm", "--run-name", "v"], backend_factory=reuse) == 0
    assert main(["run", *args, "--backend", "hf", "--run-name", "h"]) == 0
    v, h = _samples(tmp_path / "v"), _samples(tmp_path / "h")
    assert v.keys() == h.keys() and len(v) == 12
    same = sum(v[k]["text"] == h[k]["text"] for k in v)
    # soft: the same counter-RNG draws in both engines; discrete greedy: argmax. Near-ties may split a few.
    assert same >= 10, f"{same}/12 samples identical"
    if mode == "soft":
        assert all(r["soft_share"] > 0 for r in v.values())
    sv = json.loads((tmp_path / "v" / "summary.json").read_text())["benchmarks"]["gsm8k"]
    sh = json.loads((tmp_path / "h" / "summary.json").read_text())["benchmarks"]["gsm8k"]
    assert sv["pass_at_k"].keys() == sh["pass_at_k"].keys() and "1" in sv["pass_at_k"]
    for k, val in sv["pass_at_k"].items():  # 3 problems x 4 samples: one problem flipping moves Pass@k by 1/3
        assert abs(val["value"] - sh["pass_at_k"][k]["value"]) <= 0.34, (k, val, sh["pass_at_k"][k])
