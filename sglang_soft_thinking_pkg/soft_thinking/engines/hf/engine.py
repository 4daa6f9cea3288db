"""The reference soft-thinking engine on Hugging Face transformers (CPU or GPU): the decode loop.

Everything a step means lives in the core; this file only runs the model::

    plan = StepPlan.build(row configs)                    per-row settings (core.plan)
    prefill the left-padded prompts (KV cache)
    repeat until every row stopped:
        logits of the last position                       [B, V]
        step = batched_decode_step(logits, phase, rows, counter uniforms, spec)
                                                          soft / discrete / forced per row (core.batch),
                                                          the same step as the SGLang plug-in
        recorder.record(rows, t, step, phase)             the rows' traces (core.recorder)
        next input = mix_embeddings(E, step.ids, step.weights)   (E[token] for discrete rows)
        stop rows at EOS / stop strings / max_new_tokens; drop them from the batch and the cache

Randomness comes from the core's counter-based generator (:class:`CounterSource`, Philox): the
draws of a step are a pure function of the row's seed, :func:`~soft_thinking.engines.base.sample_seed`
``(seed, prompt index, sample index)``, and its position (prompt length + tokens generated so
far, SGLang's ``seq_lens``), so a sample is the same whatever batch it runs in, whatever rows
join or leave, and in every engine.

The step (:class:`BatchStepper`) is the core's sync-free :func:`~soft_thinking.core.batch.sample_step`, eager by
default: it equals :func:`~soft_thinking.core.step.decode_step` bit for bit (tests/core/test_batch.py).
It reads a candidate width ``M`` of ``max(K, every active top_k, 1024)`` columns (capped at ``V``);
a step whose answer-phase nucleus does not fit (``truncated``) is recomputed with ``M = V``, so the
result is always exact. ``step="decode_step"`` keeps the original per-group path;
``compile_step=True`` runs the step through ``torch.compile(fullgraph=True)`` (inductor may reorder
float sums: floats within a few ulps of the eager step; one compilation per batch bucket).

The KV cache (``kv_cache="preallocated"``, the default) writes each step into buffers sized for the
prompt plus the token budget (:mod:`.cache`) instead of transformers' per-step ``torch.cat``: the
same values, bit-identical samples; ``kv_cache="dynamic"`` keeps transformers' ``DynamicCache``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

import torch
from transformers import DynamicCache

from soft_thinking.core.batch import BatchSpec, BatchStep, RowSettings, batch_bucket, sample_step
from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.mixture import mix_embeddings
from soft_thinking.core.noise import NOISE_KINDS, CounterSource
from soft_thinking.core.phase import PhaseTracker
from soft_thinking.core.plan import StepPlan, new_phase
from soft_thinking.core.recorder import TraceMeta, TraceRecorder
from soft_thinking.core.sampling import PARTIAL_SORT
from soft_thinking.core.step import StepResult, decode_step
from soft_thinking.engines.base import (
    Configs,
    EngineError,
    Prompts,
    Sample,
    make_sample,
    per_prompt_configs,
    resolve_think_end,
    sample_seed,
)
from soft_thinking.engines.hf.cache import preallocated_cache

__all__ = ["BatchStepper", "EngineError", "Sample", "SoftThinkingEngine", "resolve_think_end", "sample_seed"]

STEPS = ("batched", "decode_step")
KV_CACHES = ("preallocated", "dynamic")


class BatchStepper:
    """The engine's step for one batch of rows: the core's batched step with the plan's kinds and widths."""

    def __init__(self, plan: StepPlan, vocab_size: int, compile_step: bool = False) -> None:
        active = [f.top_k[(f.top_k > 0) & (f.top_k < vocab_size)] for f in (plan.think, plan.answer)]
        widest = max([plan.k, PARTIAL_SORT] + [int(a.max()) for a in active if a.numel()])
        kinds = tuple(NOISE_KINDS[c] for c in sorted(set(plan.noise.tolist())))
        base = BatchSpec.from_plan(plan)
        self.specs = [replace(base, width=min(widest, vocab_size), kinds=kinds)]
        if self.specs[0].width < vocab_size:
            self.specs.append(replace(self.specs[0], width=vocab_size))
        self.rows = RowSettings.from_plan(plan)
        self.compiled = compile_step
        self.fn = torch.compile(sample_step, fullgraph=True, dynamic=False) if compile_step else sample_step

    def select(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (rows leaving the batch)."""
        self.rows = self.rows.select(index)

    def __call__(self, logits: torch.Tensor, phase: PhaseTracker, seed: torch.Tensor,
                 position: torch.Tensor) -> BatchStep:
        """One step; updates ``phase`` in place. A truncated step (host check) is redone at ``M = V``.

        Compiled, the rows are padded to a batch bucket (:func:`batch_bucket`, copies of row 0: rows
        are independent, so padding changes no row's result) and the graph compiles once per bucket.
        """
        b = logits.shape[0]
        args = (logits, phase.state, self.rows, seed, position)
        if self.compiled and batch_bucket(b) != b:
            pad = torch.cat([torch.arange(b, device=logits.device),
                             torch.zeros(batch_bucket(b) - b, dtype=torch.int64, device=logits.device)])
            args = (logits[pad], phase.state.select(pad), self.rows.select(pad), seed[pad], position[pad])
        for spec in self.specs:
            step, state = self.fn(*args, spec)
            if not bool(step.truncated[:b].any()):
                break
        if step.tokens.shape[0] != b:
            keep = torch.arange(b, device=logits.device)
            step = BatchStep(**{f.name: getattr(step, f.name)[keep] for f in fields(step)})
            state = state.select(keep)
        phase.state = state
        return step


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), model.config):
        eos = getattr(src, "eos_token_id", None) if src is not None else None
        if eos is not None:
            ids.update([eos] if isinstance(eos, int) else list(eos))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


class SoftThinkingEngine:
    """Batched, KV-cached soft-thinking generation for any causal LM with input embeddings."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        step: str = "batched",
        compile_step: bool = False,
        kv_cache: str = "preallocated",
    ) -> None:
        if step not in STEPS:
            raise EngineError(f"step={step!r}: allowed {STEPS}")
        if kv_cache not in KV_CACHES:
            raise EngineError(f"kv_cache={kv_cache!r}: allowed {KV_CACHES}")
        self.kv_cache = kv_cache
        if compile_step and step != "batched":
            raise EngineError("compile_step=True needs step='batched'")
        self.step, self.compile_step = step, compile_step
        if model.get_input_embeddings() is None:
            raise EngineError(f"{type(model).__name__} exposes no input embeddings (get_input_embeddings() is None)")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(device=self.device, dtype=dtype) if dtype is not None else model.to(self.device)
        self.model.eval()
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(model, tokenizer)
        if not self.eos_ids:
            raise EngineError("neither the model nor the tokenizer defines an eos_token_id")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.vocab_size = int(self.model.get_input_embeddings().weight.shape[0])
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)

    # ------------------------------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        if len(prompts) == 0:
            raise EngineError("prompts: the list is empty")
        out: list[list[int]] = []
        for i, p in enumerate(prompts):
            ids = self.tokenizer.encode(p, add_special_tokens=False) if isinstance(p, str) else [int(t) for t in p]
            if not ids:
                raise EngineError(f"prompts[{i}] is empty (0 tokens)")
            if self.max_positions is not None and len(ids) >= self.max_positions:
                raise EngineError(
                    f"prompts[{i}] has {len(ids)} tokens, longer than the model's context "
                    f"(max_position_embeddings={self.max_positions}) minus one generated token"
                )
            if max(ids) >= self.vocab_size or min(ids) < 0:
                raise EngineError(f"prompts[{i}] has token ids outside [0, {self.vocab_size})")
            out.append(ids)
        return out

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Prompts,
        config: Configs,
        n: int = 1,
        max_new_tokens: int = 256,
        seed: int = 0,
        stop: Sequence[str] = (),
        batch_size: int | None = None,
        progress: bool = False,
        prompt_offset: int = 0,
        seeds: Sequence[int] | None = None,
    ) -> list[Sample]:
        """Generate ``n`` samples per prompt; returns ``samples[i * n + j]`` (prompt-major).

        ``prompts`` are already chat-templated strings (or token-id lists); ``config`` is one
        :class:`SoftThinkingConfig` or one per prompt (rows of a batch may differ in their
        filters, noise kind, K, tau_g and noise factor). ``batch_size`` caps the rows decoded
        together (default: all). Sample ``j`` of prompt ``i`` draws from the counter generator keyed
        by ``sample_seed(seed, prompt_offset + i, j)``, or with ``sample_seed(seeds[i], 0, j)`` when
        per-prompt ``seeds`` are given (the same sample as a call for that prompt alone with
        ``seed=seeds[i]``), so a caller that splits or batches its prompts differently gets the
        same samples.
        """
        configs = per_prompt_configs(config, len(prompts))
        for cfg in dict.fromkeys(configs):
            cfg.validate(vocab_size=self.vocab_size)
        if not isinstance(n, int) or n < 1:
            raise EngineError(f"n={n!r}: allowed an integer >= 1")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise EngineError(f"max_new_tokens={max_new_tokens!r}: allowed an integer >= 1")
        encoded = self.encode_prompts(prompts)
        if seeds is not None and len(seeds) != len(encoded):
            raise EngineError(f"seeds has {len(seeds)} entries for {len(encoded)} prompts: allowed one seed per prompt")
        rows = [(pi, si) for pi in range(len(encoded)) for si in range(n)]
        bs = batch_size or len(rows)
        if bs < 1:
            raise EngineError(f"batch_size={batch_size!r}: allowed an integer >= 1")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(rows), desc="generate", unit="sample")
        samples: list[Sample] = []
        for start in range(0, len(rows), bs):
            chunk = rows[start : start + bs]
            row_seeds = [
                sample_seed(seeds[pi], 0, si) if seeds is not None else sample_seed(seed, prompt_offset + pi, si)
                for pi, si in chunk
            ]
            samples.extend(self._generate_rows(encoded, chunk, row_seeds, configs, max_new_tokens, tuple(stop)))
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return samples

    # ------------------------------------------------------------------------------------------
    def _generate_rows(
        self,
        encoded: list[list[int]],
        rows: list[tuple[int, int]],
        row_seeds: list[int],
        configs: list[SoftThinkingConfig],
        max_new_tokens: int,
        stop: tuple[str, ...],
    ) -> list[Sample]:
        t0 = time.perf_counter()
        dev = self.device
        b = len(rows)
        row_cfgs = [configs[pi] for pi, _ in rows]
        prompt_ids = [encoded[pi] for pi, _ in rows]
        plen = max(len(p) for p in prompt_ids)
        budget_list = [
            max_new_tokens if self.max_positions is None else min(max_new_tokens, self.max_positions - len(p))
            for p in prompt_ids
        ]
        steps = max(budget_list)
        plan = StepPlan.build(row_cfgs, dev)
        phase = new_phase(row_cfgs, dev)
        recorder = TraceRecorder([TraceMeta.from_config(c) for c in row_cfgs], steps, plan.k, dev)
        seeds = torch.tensor(row_seeds, dtype=torch.int64, device=dev)
        prompt_len = torch.tensor([len(p) for p in prompt_ids], dtype=torch.int64, device=dev)
        finish = [""] * b

        # prefill (left padding)
        input_ids = torch.full((b, plen), self.pad_id, dtype=torch.int64, device=dev)
        attn = torch.zeros(b, plen, dtype=torch.int64, device=dev)
        for r, p in enumerate(prompt_ids):
            input_ids[r, plen - len(p) :] = torch.tensor(p, device=dev)
            attn[r, plen - len(p) :] = 1
        positions = (attn.cumsum(-1) - 1).clamp_min(0)
        cache = (preallocated_cache(self.model.config, plen + steps) if self.kv_cache == "preallocated"
                 else DynamicCache(config=self.model.config))
        out = self.model(
            input_ids=input_ids, attention_mask=attn, position_ids=positions,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        )
        logits = out.logits[:, -1, :]
        embed = self.model.get_input_embeddings().weight
        alive = torch.arange(b, device=dev)
        alive_list = list(range(b))
        budget = torch.tensor(budget_list, device=dev)
        next_pos = positions[:, -1] + 1
        eos = torch.tensor(sorted(self.eos_ids), device=dev)
        tails = [""] * b if stop else None

        stepper = BatchStepper(plan, self.vocab_size, self.compile_step) if self.step == "batched" else None
        for t in range(steps):
            res: BatchStep | StepResult
            if stepper is not None:
                res = stepper(logits, phase, seeds, prompt_len + t)
            else:
                res = decode_step(logits, phase, plan, CounterSource(seeds, prompt_len + t))
            recorder.record(alive, t, res, phase)
            is_eos = torch.isin(res.tokens, eos)
            done = (is_eos | (budget[alive] <= t + 1)).tolist()
            stopped = [False] * len(alive_list)
            if tails is not None:  # stop strings: the rows' recent text
                for j, (r, tok) in enumerate(zip(alive_list, res.tokens.tolist())):
                    tails[r] = (tails[r] + self.tokenizer.decode([tok]))[-256:]
                    stopped[j] = any(s in tails[r] for s in stop)
            keep_rows = None
            if any(done) or any(stopped):
                eos_list = is_eos.tolist()
                for j, r in enumerate(alive_list):
                    if eos_list[j]:
                        finish[r] = "eos"
                    elif stopped[j]:
                        finish[r] = "stop"
                    elif done[j]:
                        finish[r] = "length" if budget_list[r] == max_new_tokens else "context"
                keep_rows = [j for j, r in enumerate(alive_list) if not finish[r]]
                if not keep_rows:
                    break
            x = mix_embeddings(embed, res.ids, res.weights).unsqueeze(1)
            if keep_rows is not None:
                sel = torch.tensor(keep_rows, device=dev)
                cache.batch_select_indices(sel)
                x, attn, next_pos = x[sel], attn[sel], next_pos[sel]
                phase.select(sel)
                plan, seeds, prompt_len = plan.rows(sel), seeds[sel], prompt_len[sel]
                if stepper is not None:
                    stepper.select(sel)
                alive_list = [alive_list[j] for j in keep_rows]
                alive = torch.tensor(alive_list, device=dev)
            attn = torch.cat([attn, torch.ones(len(alive_list), 1, dtype=attn.dtype, device=dev)], dim=1)
            out = self.model(
                inputs_embeds=x, attention_mask=attn, position_ids=next_pos.unsqueeze(1),
                past_key_values=cache, use_cache=True,
            )
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1

        elapsed = time.perf_counter() - t0
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
        return [
            make_sample(rec, row_cfgs[r], rows[r][0], rows[r][1], prompt_ids[r], finish[r], elapsed, decode)
            for r, rec in enumerate(recorder.finish())
        ]
