"""Update-step cost of SofT-GRPO vs GRPO on the same batch shape (issue targets: time ≤ 1.15×,
peak memory of the log-prob recomputation ≤ 1.1×).

    python -m bench.update [--threads 1] [--repeats 5] [--out bench/results/update.json]

Both arms run the trainer's own code on batches of identical shape (B sequences × T steps):

- ``time``: one full update (old-log-prob recomputation, reference log-probs, one PPO
  mini-batch with backward and AdamW) — :meth:`softgrpo.reference.trainer.Trainer.update`;
- ``memory``: peak resident memory added by one log-prob recomputation with backward
  (``replay_logprobs`` + ``sum().backward()``): ``VmHWM`` after minus ``VmRSS`` before, with the
  high-water mark reset through ``/proc/self/clear_refs``; each arm is measured in a fresh child
  process with ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors leave the resident set.

Cases: (a) the quickstart model (vocab 103) on real rollouts of each arm; (b) a tiny model with a
32k vocabulary on synthetic traces (soft steps with K=5 Gumbel candidates vs discrete steps), where
the ``[N, V]`` log-softmax dominates as it does for real LLMs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.noise import GeneratorSource, draw_noise
from soft_thinking.core.trace import SoftTrace
from soft_thinking.engines.hf.replay import replay_logprobs
from soft_thinking.engines.hf.tiny import tiny_model, tiny_model_and_tokenizer
from soft_thinking.io import atomic_write_text
from softgrpo.config import load_config
from softgrpo.reference.trainer import Rollout, Trainer

OUT = Path(__file__).resolve().parent / "results" / "update.json"


def _status_bytes(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1)) * 1024


def peak_rss_delta(fn) -> int:
    """Resident-memory high-water mark reached while ``fn`` runs, minus the resident set before."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_bytes("VmRSS")
    fn()
    return _status_bytes("VmHWM") - before


def peak_in_child(case: str, arm: str) -> int:
    """Run :func:`child_measure` in a fresh interpreter (clean heap) and return its peak bytes."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-m", "bench.update", "--child", case, arm], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parents[1], check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"])


def synthetic_traces(b: int, t: int, k: int, v: int, soft: bool, seed: int) -> list[SoftTrace]:
    g = torch.Generator().manual_seed(seed)
    traces = []
    for i in range(b):
        tokens = torch.randint(0, v, (t,), generator=g)
        if soft:
            ids = torch.randint(0, v, (t, k), generator=g)
            ids[:, 0] = tokens
            p = torch.softmax(torch.randn(t, k, generator=g) * 2, -1)
            gens = GeneratorSource([torch.Generator().manual_seed(seed * 7919 + i * 31 + j) for j in range(t)])
            q = draw_noise("gumbel", p, gens, SoftThinkingConfig().noise_params())
            q, order = q.sort(-1, descending=True)
            ids = ids.gather(-1, order)
            tokens = ids[:, 0].clone()
            flags = torch.ones(t, dtype=torch.bool)
        else:
            ids = torch.zeros(t, k, dtype=torch.int64)
            ids[:, 0] = tokens
            q = torch.zeros(t, k)
            flags = torch.zeros(t, dtype=torch.bool)
        traces.append(SoftTrace(tokens=tokens, ids=ids.to(torch.int32), q=q, soft=flags,
                                logprobs=torch.zeros(t), noise="gumbel", tau_g=0.1, temperature=1.0,
                                answer_temperature=1.0, answer_start=t if soft else 0))
    return traces


def build_quickstart() -> tuple[dict, dict]:
    """Trainers and real rollouts of each arm on the quickstart model, cut to a common length."""
    rollouts = {}
    trainers = {}
    for arm in ("grpo", "softgrpo"):
        cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml", [
            f"trainer.arm={arm}", "trainer.logger=[]", "trainer.progress=false", "trainer.resume_mode=disable",
            f"trainer.default_local_dir=/tmp/softgrpo-bench-{arm}", "data.train_size=256",
            "custom_reward_function.path=bench/update.py", "custom_reward_function.name=length_reward",
        ])
        model, tok = tiny_model_and_tokenizer("qwen2", hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                                              intermediate_size=384, max_position_embeddings=256)
        tr = Trainer(cfg, model=model, tokenizer=tok)
        trainers[arm] = tr
        rollouts[arm] = tr.rollout(tr.sampler.next_batch(), step=1)
    t = min(min(len(s.trace) for s in ro.samples) for ro in rollouts.values())
    for arm, ro in rollouts.items():  # same shape: every response cut to the shortest one, collated again
        for s in ro.samples:
            s.trace = s.trace.truncate(t)
        rollouts[arm] = Rollout.collate(ro.examples, ro.samples, ro.rewards, ro.advantages, trainers[arm].device)
    return trainers, rollouts


def case_quickstart(repeats: int) -> dict:
    trainers, rollouts = build_quickstart()
    out: dict = {}
    for arm, tr in trainers.items():
        ro = rollouts[arm]
        fresh = Rollout.collate(ro.examples, ro.samples, ro.rewards, ro.advantages, tr.device)
        tr.update(fresh)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            tr.update(fresh)
            times.append(time.perf_counter() - t0)
        out[arm] = {"update_s_median": statistics.median(times), "update_s_all": times,
                    "peak_bytes": peak_in_child("quickstart", arm), "batch": [len(ro.samples), len(ro.samples[0].trace)],
                    "soft_share": sum(s.trace.soft_share for s in ro.samples) / len(ro.samples)}
    out["ratio_time"] = out["softgrpo"]["update_s_median"] / out["grpo"]["update_s_median"]
    out["ratio_peak_memory"] = out["softgrpo"]["peak_bytes"] / out["grpo"]["peak_bytes"]
    return out


def length_reward(data_source, solution_str, ground_truth, extra_info=None) -> float:
    """A dense stand-in reward for the benchmark (timing does not depend on its value)."""
    return (len(solution_str) % 7) / 7.0


LARGE = dict(b=16, t=128, v=32000, k=5)


def large_vocab_runner(arm: str):
    """A closure that recomputes (with backward) the log-probs of a synthetic batch of ``arm``."""
    b, t, v, k = LARGE["b"], LARGE["t"], LARGE["v"], LARGE["k"]
    model = tiny_model("qwen2", vocab_size=v, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                       intermediate_size=128, max_position_embeddings=512)
    prompts = [[5, 6, 7, 8]] * b
    traces = synthetic_traces(b, t, k, v, arm == "softgrpo", seed=1)

    def run() -> None:
        model.zero_grad(set_to_none=True)
        lp, _ = replay_logprobs(model, prompts, traces, SoftThinkingConfig().logprob_options())
        lp.sum().backward()

    return run


def case_large_vocab(repeats: int) -> dict:
    out: dict = {}
    for arm in ("grpo", "softgrpo"):
        run = large_vocab_runner(arm)

        run()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        out[arm] = {"recompute_fwd_bwd_s_median": statistics.median(times), "peak_bytes": peak_in_child("vocab_32k", arm),
                    "batch": [LARGE["b"], LARGE["t"]], "vocab": LARGE["v"], "K": LARGE["k"]}
    out["ratio_time"] = out["softgrpo"]["recompute_fwd_bwd_s_median"] / out["grpo"]["recompute_fwd_bwd_s_median"]
    out["ratio_peak_memory"] = out["softgrpo"]["peak_bytes"] / out["grpo"]["peak_bytes"]
    return out


def child_measure(case: str, arm: str) -> int:
    if case == "vocab_32k":
        run = large_vocab_runner(arm)
    else:
        trainers, rollouts = build_quickstart()
        tr, ro = trainers[arm], rollouts[arm]

        def run() -> None:
            prompts, batch = ro.rows(slice(None))
            replay_logprobs(tr.model, prompts, batch, tr.lp_opts, tr.engine.pad_id)[0].sum().backward()

    run()  # warm-up: lazy initialisations are not part of the recomputation's cost
    return peak_rss_delta(run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--child", nargs=2, metavar=("CASE", "ARM"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps({"peak_bytes": child_measure(*args.child)}))
        return 0
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"torch": torch.__version__, "threads": args.threads, "cpu": platform.processor() or platform.machine()},
        "targets": {"ratio_time": "<= 1.15", "ratio_peak_memory": "<= 1.1"},
        "quickstart_model": case_quickstart(args.repeats),
        "vocab_32k": case_large_vocab(args.repeats),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    for case in ("quickstart_model", "vocab_32k"):
        r = result[case]
        print(f"{case:18s} time softgrpo/grpo = {r['ratio_time']:.3f}   peak memory softgrpo/grpo = {r['ratio_peak_memory']:.3f}")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
