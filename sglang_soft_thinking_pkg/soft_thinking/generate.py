"""Command-line generation with the reference soft-thinking engine.

Examples::

    python -m soft_thinking.generate --model tiny-qwen2 --prompt "What is 2+3?" --n 2
    python -m soft_thinking.generate --model smollm2-135m --prompt "What is 2+3?" \\
        --mode soft --noise gumbel --max-topk 5 --tau 0.1 --top-p 0.95 --top-k 5 --json

``--model`` is a local Hugging Face folder, a Hub id, a short name of
:data:`soft_thinking.engines.hf.models.MODEL_REGISTRY` (``smollm2-135m``) or one of ``tiny-qwen2``,
``tiny-qwen3``, ``tiny-llama`` (a tiny random model with a character tokenizer, for demos and
tests). Prompts go through the tokenizer's chat template unless ``--no-chat-template``.

Every sampling flag sets the :class:`~soft_thinking.core.config.SoftThinkingConfig` field of the
same name (``--top-p`` or the original's ``--top_p``; ``--tau`` and ``--cold-stop-*`` are kept as
aliases); its help text and default are the field's (``--help``).

The think-end string (``--think-end``, default ``</think>``) is tokenized with the model's
tokenizer; when it is not a single token of the vocabulary it is used as a multi-token sequence.
``--soft-until-eos`` drops the think-end instead: the sample stays soft until EOS.

Per sample the output gives the answer, the thinking length, the share of soft steps, the mean
rollout log-prob, the single-candidate share of soft steps, the finish reason and the decode speed.
With ``--json`` every sample is one JSON line (``"type": "sample"``) followed by one summary line
(``"type": "summary"``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from soft_thinking.argparser import ArgumentParser
from soft_thinking.core.config import NOISE_KINDS, ConfigError, SoftThinkingConfig
from soft_thinking.devices import check_device
from soft_thinking.engines.hf.engine import EngineError, Sample, SoftThinkingEngine, resolve_think_end
from soft_thinking.errors import SoftGRPOError, exit_on_error
from soft_thinking.text import THINK_END

#: ``--model`` names that build a tiny random model (``soft_thinking.engines.hf.tiny``) instead of loading one.
TINY_MODELS: dict[str, str] = {"tiny-qwen2": "qwen2", "tiny-qwen3": "qwen3", "tiny-llama": "llama"}
DTYPES = ("float32", "bfloat16", "float16")


#: Sampling flags of the CLI: ``(flag, type)``; each sets the :class:`SoftThinkingConfig` field of
#: the same name (also spelled with underscores, the original's spelling), help and default
#: come from the field's documentation. Aliases of the earlier CLI: :data:`FLAG_ALIASES`.
CONFIG_FLAGS: tuple[tuple[str, type], ...] = (
    ("noise", str), ("max_topk", int), ("gumbel_softmax_temperature", float), ("noise_factor", float),
    ("temperature", float), ("top_p", float), ("top_k", int), ("min_p", float),
    ("after_thinking_temperature", float), ("after_thinking_top_p", float), ("after_thinking_top_k", int),
    ("after_thinking_min_p", float),
    ("early_stopping_entropy_threshold", float), ("early_stopping_length_threshold", int),
)
FLAG_ALIASES: dict[str, str] = {
    "gumbel_softmax_temperature": "--tau",
    "early_stopping_entropy_threshold": "--cold-stop-threshold",
    "early_stopping_length_threshold": "--cold-stop-length",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m soft_thinking.generate``."""
    p = ArgumentParser(
        prog="python -m soft_thinking.generate",
        description="Generate with soft thinking (or plain discrete decoding) on a transformers model.",
    )
    p.add_argument("--model", required=True, help="local folder, Hub id, smollm2-135m, or tiny-qwen2/-qwen3/-llama")
    p.add_argument("--prompt", action="append", required=True, help="user message (repeat for several prompts)")
    p.add_argument("--mode", choices=("soft", "discrete"), default="soft", help="enable_soft_thinking on/off")
    for name, typ in CONFIG_FLAGS:
        spellings = dict.fromkeys(["--" + name.replace("_", "-"), "--" + name, *FLAG_ALIASES.get(name, "").split()])
        extra = {"choices": NOISE_KINDS} if name == "noise" else {}
        p.add_argument(*spellings, dest=name, type=typ, default=None, help=SoftThinkingConfig.help(name), **extra)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--n", type=int, default=1, help="samples per prompt")
    p.add_argument("--batch-size", type=int, default=None, help="rows decoded together, >= 1 (default: all rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps, as this torch supports")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--trust-remote-code", action="store_true", help="allow the checkpoint's own modelling code")
    p.add_argument("--think-end", default=THINK_END, help="think-end string (may tokenize to several tokens)")
    p.add_argument("--soft-until-eos", action="store_true", help=SoftThinkingConfig.help("soft_until_eos"))
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--no-chat-template", action="store_true", help="feed the prompts as they are")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (>= 1)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Every value that does not need the tokenizer, before a model is loaded (a bad one is one
    ``error:`` line naming the flag and the allowed values, exit status 2)."""
    counts = {"--n": (args.n, 1), "--max-new-tokens": (args.max_new_tokens, 1), "--seed": (args.seed, 0)}
    if args.threads is not None:
        counts["--threads"] = (args.threads, 1)
    if args.batch_size is not None:  # None is "all rows"; 0 is not a spelling of it
        counts["--batch-size"] = (args.batch_size, 1)
    for flag, (value, low) in counts.items():
        if value < low:
            raise ConfigError(f"{flag}={value!r} is invalid: allowed an integer >= {low}")
    if not args.think_end:
        raise ConfigError("--think-end='' is invalid: allowed a non-empty string (default </think>)")
    if any(not stop for stop in args.stop):
        raise ConfigError("--stop='' is invalid: allowed a non-empty stop string")
    check_device(args.device)
    placeholder = argparse.Namespace(**{**vars(args), "think_end": None})
    build_config(placeholder, None).validate()  # vocabulary-dependent checks run again after loading
    if args.model not in TINY_MODELS:
        from soft_thinking.engines.hf.model_checks import check_model_source

        check_model_source(args.model, trust_remote_code=args.trust_remote_code)


def load(name: str, device: str, dtype: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``--model`` (tiny names build a tiny random model)."""
    from soft_thinking.engines.hf.models import resolve_dtype

    if name in TINY_MODELS:
        from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer

        model, tok = tiny_model_and_tokenizer(TINY_MODELS[name], dtype=resolve_dtype(dtype))
        return model.to(device), tok
    from soft_thinking.engines.hf.models import load_model

    return load_model(name, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def build_config(args: argparse.Namespace, tokenizer: Any) -> SoftThinkingConfig:
    """The :class:`SoftThinkingConfig` of the parsed flags (think-end resolved with ``tokenizer``)."""
    soft = args.mode == "soft"
    flags = {name: getattr(args, name) for name, _ in CONFIG_FLAGS}
    flags["enable_soft_thinking"] = soft
    if args.think_end is None:  # check_args: a stand-in id before the tokenizer is known
        flags["think_end_token_ids"] = () if args.soft_until_eos else (0,)
    else:
        flags["think_end_token_ids"] = () if args.soft_until_eos else resolve_think_end(tokenizer, args.think_end)
    flags["soft_until_eos"] = bool(args.soft_until_eos) and soft
    return SoftThinkingConfig.from_flags(flags)


def sample_record(s: Sample) -> dict[str, Any]:
    """The JSON-able summary of one sample."""
    n = s.num_tokens
    return {
        "type": "sample",
        "prompt_index": s.prompt_index,
        "sample_index": s.sample_index,
        "answer": s.answer_text,
        "thinking": s.thinking_text,
        "text": s.text,
        "num_tokens": n,
        "num_thinking_tokens": s.num_thinking_tokens,
        "soft_share": s.soft_share,
        "mean_logprob": float(s.trace.logprobs.mean()) if n else 0.0,
        "single_candidate_share": float(s.stats.get("single_candidate_share", 0.0)),
        "finish_reason": s.finish_reason,
        "cold_stopped": s.cold_stopped,
        # rows decode together, so this is the row's decode speed inside its batch
        "tokens_per_s": n / s.time_s if s.time_s > 0 else 0.0,
    }


def format_record(r: dict[str, Any]) -> str:
    """Human-readable block for one sample record."""
    return (
        f"=== prompt {r['prompt_index']} sample {r['sample_index']} ===\n"
        f"answer: {r['answer']!r}\n"
        f"thinking: {r['num_thinking_tokens']} tokens | generated: {r['num_tokens']} tokens | "
        f"soft steps: {r['soft_share']:.1%} | mean rollout log-prob: {r['mean_logprob']:.4f} | "
        f"single-candidate share: {r['single_candidate_share']:.1%} | finish: {r['finish_reason']}"
        f"{' (cold stop)' if r['cold_stopped'] else ''} | {r['tokens_per_s']:.1f} tokens/s"
    )


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input or model: one ``error:`` line)."""
    args = build_parser().parse_args(argv)
    check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from soft_thinking.text import apply_chat_template

    try:
        model, tok = load(args.model, args.device, args.dtype, args.trust_remote_code)
    except (SoftGRPOError, ValueError) as err:
        raise EngineError(f"--model {args.model!r}: {err}") from err
    engine = SoftThinkingEngine(model, tok)
    cfg = build_config(args, tok)
    prompts = list(args.prompt) if args.no_chat_template else [apply_chat_template(tok, p) for p in args.prompt]
    t0 = time.perf_counter()
    samples = engine.generate(
        prompts, cfg, n=args.n, max_new_tokens=args.max_new_tokens, seed=args.seed,
        stop=tuple(args.stop), batch_size=args.batch_size,
    )
    wall = time.perf_counter() - t0
    total = sum(s.num_tokens for s in samples)
    summary = {
        "type": "summary",
        "model": args.model,
        "mode": args.mode,
        "noise": cfg.effective_noise,
        "think_end_token_ids": list(cfg.think_end_token_ids),
        "samples": len(samples),
        "generated_tokens": total,
        "wall_s": wall,
        "tokens_per_s": total / wall if wall > 0 else 0.0,
    }
    for s in samples:
        r = sample_record(s)
        print(json.dumps(r) if args.json else format_record(r))
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"--- {summary['samples']} samples, {total} tokens in {wall:.2f} s "
            f"({summary['tokens_per_s']:.1f} tokens/s); think-end ids {summary['think_end_token_ids']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
