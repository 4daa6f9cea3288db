"""An offline ``sglang.Engine`` with the soft-thinking plug-in, behind the engines' ``generate`` interface.

``SGLangEngine(model_path, **engine_kwargs).generate(prompts, config, n, max_new_tokens, seed)``
returns the same :class:`~soft_thinking.engines.base.Sample` objects as the reference HF engine:
sample ``j`` of prompt ``i`` is seeded with ``sample_seed(seed, i, j)`` (the counter RNG's key),
soft configs travel as flat ``custom_params`` and their traces come back in
``meta_info["softgrpo"]``; a discrete config runs SGLang's stock sampler and its trace is built
from ``output_token_logprobs``.

The plug-in must be active in the server processes: the constructor sets ``SOFTGRPO_SGLANG``
(``require`` unless already set) before SGLang spawns its schedulers, and a 2-token soft request
checks that traces come back ("plug-in not active" otherwise).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import torch

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.recorder import RecordedRow
from soft_thinking.core.trace import SoftTrace
from soft_thinking.engines.base import EngineError, Sample, make_sample, per_prompt_configs, sample_seed
from soft_thinking.engines.sglang.codec import FLAG_FORCED, TRACE_KEY, flags_of, trace_from_rows
from soft_thinking.engines.sglang.settings import MODE_ENV, SoftRequest

NOT_ACTIVE = ("soft-thinking plug-in not active: no meta_info['softgrpo'] (entry point not installed in this "
              "environment, SGLANG_PLUGINS excludes 'softgrpo', or a hook failed: see the server log)")


def request_flags(cfg: SoftThinkingConfig, seed: int) -> dict[str, Any]:
    """The flat, JSON-safe ``custom_params`` of a soft config (every field, lists for tuples, no Nones)."""
    flags: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        flags[f.name] = list(value) if isinstance(value, tuple) else value
    flags["seed"] = int(seed)
    return flags


def stock_sampling(cfg: SoftThinkingConfig) -> dict[str, Any]:
    """SGLang ``sampling_params`` of a discrete config (the stock sampler)."""
    return {"temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k, "min_p": cfg.min_p}


class SGLangEngine:
    """Soft-thinking generation on an offline ``sglang.Engine`` (module doc)."""

    def __init__(self, model_path: str, *, tokenizer: Any = None, self_test: bool = True, **engine_kwargs: Any) -> None:
        if not torch.cuda.is_available():
            raise EngineError("the SGLang backend needs a CUDA GPU; use the reference engine (--backend hf) on CPU")
        os.environ.setdefault(MODE_ENV, "require")  # inherited by the spawned scheduler processes
        import sglang

        self.engine = sglang.Engine(model_path=model_path, skip_tokenizer_init=False, **engine_kwargs)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer = tokenizer
        self.eos_ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
        if self_test:
            self.self_test()

    def close(self) -> None:
        self.engine.shutdown()

    def self_test(self) -> None:
        """A 2-token soft request must come back with 2 trace rows."""
        cfg = SoftThinkingConfig(max_topk=2, top_k=2, think_end_token_ids=(), soft_until_eos=True, noise="gumbel")
        out = self._run([[1, 2, 3]], [cfg], [1], 2, ())[0]
        rows = out["meta_info"].get(TRACE_KEY)
        if rows is None or len(rows) != len(out["output_ids"]):
            raise EngineError(NOT_ACTIVE)

    def _run(self, prompt_ids: list[list[int]], configs: list[SoftThinkingConfig], seeds: list[int],
             max_new_tokens: int, stop: Sequence[str]) -> list[dict]:
        params = []
        for cfg, seed in zip(configs, seeds):
            sp = {"max_new_tokens": max_new_tokens, "stop": list(stop), "skip_special_tokens": False}
            if cfg.enable_soft_thinking:
                sp["custom_params"] = request_flags(cfg, seed)
            else:
                sp.update(stock_sampling(cfg))
            params.append(sp)
        return self.engine.generate(input_ids=prompt_ids, sampling_params=params, return_logprob=True)

    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]], config: Any, n: int = 1,
                 max_new_tokens: int = 256, seed: int = 0, *, stop: Sequence[str] = (),
                 seeds: Sequence[int] | None = None, **_ignored: Any) -> list[Sample]:
        """``n`` samples per prompt, prompt-major (the :class:`RolloutEngine` contract)."""
        t0 = time.perf_counter()
        encoded = [list(p) if not isinstance(p, str) else self.tokenizer.encode(p, add_special_tokens=False)
                   for p in prompts]
        configs = per_prompt_configs(config, len(encoded))
        keys = [(i, j) for i in range(len(encoded)) for j in range(n)]
        row_seeds = [sample_seed(seed, i, j) if seeds is None else sample_seed(int(seeds[i]), 0, j) for i, j in keys]
        outs = self._run([encoded[i] for i, _ in keys], [configs[i] for i, _ in keys], row_seeds, max_new_tokens, stop)
        elapsed = (time.perf_counter() - t0) / max(len(keys), 1)
        samples = []
        for (i, j), s, out in zip(keys, row_seeds, outs):
            cfg = configs[i]
            finish = self._finish_reason(out)
            row = self._recorded(out, cfg, s)
            samples.append(make_sample(row, cfg, i, j, encoded[i], finish, elapsed,
                                       lambda ids: self.tokenizer.decode(ids, skip_special_tokens=False)))
        return samples

    def _finish_reason(self, out: dict) -> str:
        fr = out["meta_info"].get("finish_reason") or {}
        kind = fr.get("type")
        if kind == "length":
            return "length"
        if kind == "stop":
            matched = fr.get("matched")
            return "eos" if isinstance(matched, int) and matched in self.eos_ids else "stop"
        raise EngineError(f"SGLang request finished with {fr!r}")

    def _recorded(self, out: dict, cfg: SoftThinkingConfig, seed: int) -> RecordedRow:
        output_ids = list(out["output_ids"])
        if cfg.enable_soft_thinking:
            rows = out["meta_info"].get(TRACE_KEY)
            if rows is None:
                raise EngineError(NOT_ACTIVE)
            trace = trace_from_rows(rows, output_ids, SoftRequest(cfg, seed))
            ended = trace.answer_start if trace.answer_start < len(trace) else -1
            forced = bool((flags_of(rows) & FLAG_FORCED).any()) if rows else False
            return RecordedRow(trace, ended, forced)
        lps = [float(x[0]) for x in out["meta_info"].get("output_token_logprobs", [])]
        if len(lps) != len(output_ids):
            raise EngineError(f"SGLang returned {len(lps)} log-probs for {len(output_ids)} tokens")
        t = len(output_ids)
        trace = SoftTrace(tokens=torch.tensor(output_ids, dtype=torch.int64),
                          ids=torch.tensor(output_ids, dtype=torch.int32).reshape(t, 1),
                          q=torch.zeros(t, 1), soft=torch.zeros(t, dtype=torch.bool),
                          logprobs=torch.tensor(lps, dtype=torch.float32), noise="none", tau_g=1.0,
                          temperature=cfg.temperature, answer_temperature=cfg.temperature, answer_start=0,
                          n_kept=torch.ones(t, dtype=torch.int16))
        return RecordedRow(trace.validate(), -1, False)
