"""GPU checks of the SGLang plug-in (issue 11), written to run unchanged on a CUDA machine with sglang 0.5.12
installed (``--no-deps`` plus its runtime deps) and this package installed (its entry point registered).

Each arm runs ``gpu_runner.py`` in its own process (SGLang loads plug-ins once per process). The model is a
tiny random Qwen2 saved to a temp folder (head_dim 64), or ``SOFTGRPO_SGLANG_TEST_MODEL`` when set.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.base import sample_seed
from soft_thinking.engines.sglang.client import request_flags
from soft_thinking.engines.sglang.codec import decode_rows

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(importlib.util.find_spec("sglang") is None, reason="needs sglang installed"),
]

RUNNER = Path(__file__).with_name("gpu_runner.py")
END = (5,)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    if os.environ.get("SOFTGRPO_SGLANG_TEST_MODEL"):
        return os.environ["SOFTGRPO_SGLANG_TEST_MODEL"]
    from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer("qwen2", hidden_size=256, num_heads=4, num_kv_heads=2, intermediate_size=512)
    d = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def run(model: str, requests: list, *, plugin: str = "require", engine: dict | None = None, stream: bool = False,
        tmp: Path) -> list:
    env = {"SOFTGRPO_SGLANG": plugin, "SOFTGRPO_SGLANG_MAX_TOPK": "8", "SOFTGRPO_SGLANG_WIDTH": "8"}
    if plugin == "none":
        env = {"SGLANG_PLUGINS": "none"}
    spec = {"env": env, "model": model, "requests": requests, "stream": stream,
            "engine": {"mem_fraction_static": 0.3, "dtype": "float32", "attention_backend": "torch_native",
                       "random_seed": 0, **(engine or {})}}
    inp, outp = tmp / "in.json", tmp / "out.json"
    inp.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(RUNNER), str(inp), str(outp)], timeout=900, env={**os.environ, **env},
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"sglang run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(outp.read_text())


def prompts(n: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(10, 60, (int(torch.randint(4, 30, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]


def soft(cfg: SoftThinkingConfig, i: int, new: int = 24, **extra) -> dict:
    return {"max_new_tokens": new, "ignore_eos": True, "custom_params": request_flags(cfg, sample_seed(0, i, 0)), **extra}


CFG = SoftThinkingConfig(max_topk=5, temperature=1.0, top_k=5, top_p=0.95, think_end_token_ids=END, noise="gumbel")
GREEDY = CFG.replace(temperature=0.0, noise="none")


def test_discrete_requests_with_the_plugin_equal_stock_sglang(model_dir, tmp_path) -> None:
    reqs = [{"input_ids": p, "sampling_params": {"max_new_tokens": 16, "temperature": 0.0}} for p in prompts(8)]
    stock = run(model_dir, reqs, plugin="none", tmp=tmp_path)
    ours = run(model_dir, reqs, tmp=tmp_path)
    assert [o["output_ids"] for o in ours] == [o["output_ids"] for o in stock]


def test_greedy_soft_equals_the_reference_engine(model_dir, tmp_path) -> None:
    from soft_thinking.engines.hf.engine import SoftThinkingEngine
    from soft_thinking.engines.hf.models import load_model

    ps = prompts(4)
    out = run(model_dir, [{"input_ids": p, "sampling_params": soft(GREEDY, i)} for i, p in enumerate(ps)], tmp=tmp_path)
    model, tok = load_model(model_dir, device="cuda", dtype="float32")
    ref = SoftThinkingEngine(model, tok, device="cuda").generate(ps, GREEDY, n=1, max_new_tokens=24)
    for o, r in zip(out, ref):
        assert o["output_ids"][: len(r.token_ids)] == r.token_ids
        ids = decode_rows([bytes.fromhex(h) for h in o["softgrpo"]])["ids"][: len(r.token_ids), :5]
        assert (torch.from_numpy(ids.copy()) == r.trace.ids[:, :5]).all()


def test_gumbel_with_the_counter_rng_equals_the_reference_engine(model_dir, tmp_path) -> None:
    """Needs the HF engine on the counter RNG (CounterSource keyed by sample_seed, position = prompt + t)."""
    from soft_thinking.engines.hf.engine import SoftThinkingEngine
    from soft_thinking.engines.hf.models import load_model

    ps = prompts(4)
    out = run(model_dir, [{"input_ids": p, "sampling_params": soft(CFG, i)} for i, p in enumerate(ps)], tmp=tmp_path)
    model, tok = load_model(model_dir, device="cuda", dtype="float32")
    ref = SoftThinkingEngine(model, tok, device="cuda").generate(ps, CFG, n=1, max_new_tokens=24, seed=0)
    for o, r in zip(out, ref):
        assert o["output_ids"][: len(r.token_ids)] == r.token_ids


def test_graphs_and_overlap_do_not_change_results_and_batch_64_staggered_equals_solo(model_dir, tmp_path) -> None:
    ps = prompts(64)
    reqs = [{"input_ids": p, "sampling_params": soft(CFG, i, new=8 + i % 24), "delay_s": 0.05 * (i % 10)}
            for i, p in enumerate(ps)]
    base = run(model_dir, reqs, tmp=tmp_path)
    for engine in ({"disable_cuda_graph": True}, {"disable_overlap_schedule": True}):
        assert run(model_dir, reqs, engine=engine, tmp=tmp_path) == base, engine
    for i in (0, 17, 63):
        alone = run(model_dir, [{**reqs[i], "delay_s": 0.0}], tmp=tmp_path)[0]
        assert alone["output_ids"] == base[i]["output_ids"] and alone["softgrpo"] == base[i]["softgrpo"]


@pytest.mark.parametrize("stream", [False, True])
def test_trace_length_equals_output_length(model_dir, tmp_path, stream) -> None:
    reqs = [{"input_ids": p, "sampling_params": soft(CFG, i, new=120)} for i, p in enumerate(prompts(3))]
    for o in run(model_dir, reqs, stream=stream, tmp=tmp_path):
        assert o["softgrpo"] is not None and len(o["softgrpo"]) == len(o["output_ids"]) == 120  # > 50: 0.5.12 fix


def test_incompatible_server_refuses_to_start_under_require(model_dir, tmp_path) -> None:
    with pytest.raises(RuntimeError, match="enable_mixed_chunk"):
        run(model_dir, [{"input_ids": [1, 2], "sampling_params": {"max_new_tokens": 2}}],
            engine={"enable_mixed_chunk": True}, tmp=tmp_path)


def test_bad_soft_request_is_rejected_with_the_key(model_dir, tmp_path) -> None:
    bad = soft(CFG, 0)
    bad["custom_params"]["max_topk"] = 99
    with pytest.raises(RuntimeError, match="max_topk"):  # the launcher's verify hook rejects it by name
        run(model_dir, [{"input_ids": [1, 2, 3], "sampling_params": bad}], plugin="on", tmp=tmp_path)
