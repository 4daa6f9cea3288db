"""Soft vs discrete decode throughput in SGLang with the soft-thinking plug-in (issue 11's target; GPU only).

Arms, each in its own process (SGLang loads plug-ins once per process), batch 64, ``ignore_eos``, a fixed
number of new tokens, CUDA graphs and the overlap scheduler on (SGLang's defaults):

==================  =====================================================================
arm                 setup
==================  =====================================================================
stock               stock SGLang (``SGLANG_PLUGINS=none``), discrete requests
plugin_discrete     plug-in on (``SOFTGRPO_SGLANG=require``), discrete requests
plugin_soft_k5      plug-in on, soft requests, K = 5, top_k 5, tau_g 0.1, soft until EOS
plugin_soft_k30     plug-in on, soft requests, K = 30, top_k 30
==================  =====================================================================

Target: ``plugin_soft / stock <= 1.10`` in time per token. Without ``--model`` the weights are random
(``load_format="dummy"``) on a DeepSeek-R1-Distill-Qwen-1.5B-shaped Qwen2 config written to a temp
folder. ``--sync-debug`` makes the plug-in run its device code under
``torch.cuda.set_sync_debug_mode("error")`` (any host sync it adds raises). Writes
``bench/results/sglang_decode.json`` (device, versions, tokens/s, ratios).

    python bench/sglang_decode.py [--model PATH] [--batch 64] [--new-tokens 512] [--sync-debug]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "sglang_decode.json"
QWEN2_1_5B = {  # DeepSeek-R1-Distill-Qwen-1.5B's shape (random weights with load_format="dummy")
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
    "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151643,
}
ARMS = {
    "stock": ({"SGLANG_PLUGINS": "none"}, None),
    "plugin_discrete": ({"SOFTGRPO_SGLANG": "require"}, None),
    "plugin_soft_k5": ({"SOFTGRPO_SGLANG": "require"}, 5),
    "plugin_soft_k30": ({"SOFTGRPO_SGLANG": "require"}, 30),
}


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def check_environment() -> None:
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        fail("bench/sglang_decode.py needs a CUDA GPU (it measures SGLang's decode throughput)")
    if importlib.util.find_spec("sglang") is None:
        fail("bench/sglang_decode.py needs sglang 0.5.12 (pip install --no-deps sglang==0.5.12 plus its runtime deps)")


def arm_main(spec: dict) -> dict:
    """One arm, in a child process: start the engine, warm up, time one batch."""
    import sglang
    import torch

    from soft_thinking.core.config import SoftThinkingConfig
    from soft_thinking.engines.base import sample_seed
    from soft_thinking.engines.sglang.client import request_flags

    engine = sglang.Engine(model_path=spec["model"], skip_tokenizer_init=True, load_format=spec["load_format"],
                           mem_fraction_static=0.8, random_seed=0, max_running_requests=spec["batch"])
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(100, 30000, (64,), generator=g).tolist() for _ in range(spec["batch"])]
    k = spec["k"]

    def params(i: int, new: int) -> dict:
        sp = {"max_new_tokens": new, "ignore_eos": True, "temperature": 1.0, "top_p": 0.95, "top_k": 5}
        if k is not None:
            cfg = SoftThinkingConfig(max_topk=k, top_k=k, top_p=0.95, soft_until_eos=True, noise="gumbel",
                                     gumbel_softmax_temperature=0.1)
            sp["custom_params"] = request_flags(cfg, sample_seed(0, i, 0))
        return sp

    engine.generate(input_ids=prompts, sampling_params=[params(i, 32) for i in range(len(prompts))])  # warm-up
    t0 = time.perf_counter()
    outs = engine.generate(input_ids=prompts, sampling_params=[params(i, spec["new_tokens"]) for i in range(len(prompts))])
    elapsed = time.perf_counter() - t0
    tokens = sum(len(o["output_ids"]) for o in outs)
    traced = all(o["meta_info"].get("softgrpo") is not None for o in outs) if k is not None else None
    engine.shutdown()
    return {"tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed, "traces_returned": traced}


def run_arm(name: str, model: str, load_format: str, args: argparse.Namespace) -> dict:
    env_extra, k = ARMS[name]
    env = {**os.environ, **env_extra, "SOFTGRPO_SGLANG_MAX_TOPK": "32"}
    if args.sync_debug:
        env["SOFTGRPO_SGLANG_SYNC_DEBUG"] = "1"
    spec = {"model": model, "load_format": load_format, "batch": args.batch, "new_tokens": args.new_tokens, "k": k}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "arm.json"
        proc = subprocess.run([sys.executable, __file__, "--arm-spec", json.dumps(spec), "--arm-out", str(out)],
                              env=env, timeout=3600)
        if proc.returncode:
            fail(f"arm {name} failed (exit {proc.returncode}); see its output above")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a local model folder (default: random weights on a 1.5B Qwen2 config)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=512)
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {list(ARMS)}")
    p.add_argument("--sync-debug", action="store_true", help="fail on any host sync inside the plug-in's step")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--arm-spec", help=argparse.SUPPRESS)
    p.add_argument("--arm-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.arm_spec:
        Path(args.arm_out).write_text(json.dumps(arm_main(json.loads(args.arm_spec))))
        return 0
    check_environment()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        fail(f"--arms: unknown {unknown}; allowed {list(ARMS)}")
    import sglang
    import torch

    with tempfile.TemporaryDirectory() as d:
        model, load_format = args.model, "auto"
        if model is None:
            (Path(d) / "config.json").write_text(json.dumps(QWEN2_1_5B))
            model, load_format = d, "dummy"
        results = {name: run_arm(name, model, load_format, args) for name in arms}
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0),
        "versions": {"torch": torch.__version__, "sglang": sglang.__version__, "python": platform.python_version()},
        "model": args.model or "random Qwen2 1.5B shape (load_format=dummy)",
        "batch": args.batch, "new_tokens": args.new_tokens, "cuda_graphs": True, "overlap": True,
        "sync_debug": args.sync_debug, "arms": results,
    }
    if "stock" in results:
        base = results["stock"]["tokens_per_s"]
        report["time_per_token_ratio_vs_stock"] = {n: base / r["tokens_per_s"] for n, r in results.items()}
        report["target_soft_over_stock_le_1_10"] = all(
            v <= 1.10 for n, v in report["time_per_token_ratio_vs_stock"].items() if n.startswith("plugin_soft"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
