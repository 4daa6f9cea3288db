"""The reference soft-thinking engine on Hugging Face transformers (CPU or GPU).

One decode loop serves discrete and soft decoding, so the two are compared on equal terms:

    prefill the left-padded prompts (KV cache)
    repeat until every row stopped:
        logits of the last position                       [B, V]
        step = core.decode_step(logits, phase, ...)        soft / discrete / forced per row
        next input = mix_embeddings(E, step.ids, step.weights)   (E[token] for discrete rows)
        record the step in the row's trace; stop rows at EOS / stop strings / max_new_tokens
        drop stopped rows from the batch and the cache

Every row draws its randomness from its own ``torch.Generator`` seeded from
``(seed, prompt index, sample index)``, so a sample is the same whatever batch it runs in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.logprob import LogProbOptions
from soft_thinking.core.mixture import mix_embeddings
from soft_thinking.core.noise import NoiseParams, mixture_weights
from soft_thinking.core.phase import PhaseTracker
from soft_thinking.core.sampling import SamplingTensors
from soft_thinking.core.step import decode_step
from soft_thinking.core.trace import SoftTrace
from soft_thinking.errors import SoftGRPOError
from soft_thinking.text import THINK_END, derive_seed


class EngineError(SoftGRPOError, ValueError):
    """Bad input to the engine; the message names the problem."""


@dataclass
class Sample:
    """One generated sample and everything the evaluation and the trainer read from it."""

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    thinking_text: str
    answer_text: str
    finish_reason: str  # "eos" | "stop" | "length" | "context"
    trace: SoftTrace
    num_thinking_tokens: int
    cold_stopped: bool
    time_s: float
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def soft_share(self) -> float:
        return self.trace.soft_share

    @property
    def logprobs(self) -> Tensor:
        return self.trace.logprobs


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The generator seed of one sample: :func:`derive_seed` of ``("softgrpo", seed, prompt, sample)``."""
    return derive_seed("softgrpo", seed, prompt_index, sample_index)


def resolve_think_end(tokenizer: Any, text: str = THINK_END) -> tuple[int, ...]:
    """The token-id sequence of the think-end string (one id for models with a ``</think>`` token)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise EngineError(f"think-end string {text!r} encodes to no tokens")
    return tuple(int(i) for i in ids)


def _end_of_subsequence(tokens: list[int], pattern: list[int]) -> int:
    """Index just past the first occurrence of ``pattern`` in ``tokens`` (-1 if absent)."""
    m = len(pattern)
    for i in range(len(tokens) - m + 1):
        if tokens[i : i + m] == pattern:
            return i + m
    return -1


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
    ) -> None:
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
    def think_end_ids(self, text: str = THINK_END) -> tuple[int, ...]:
        return resolve_think_end(self.tokenizer, text)

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
        prompts: Sequence[str] | Sequence[Sequence[int]],
        config: SoftThinkingConfig,
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

        ``prompts`` are already chat-templated strings (or token-id lists). ``batch_size`` caps
        the rows decoded together (default: all). Sample ``j`` of prompt ``i`` draws from a
        generator seeded with ``sample_seed(seed, prompt_offset + i, j)``, or with
        ``sample_seed(seeds[i], 0, j)`` when per-prompt ``seeds`` are given (the same sample as a
        call for that prompt alone with ``seed=seeds[i]``), so a caller that splits or batches
        its prompts differently gets the same samples.
        """
        config.validate(vocab_size=self.vocab_size)
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
            samples.extend(self._generate_rows(encoded, chunk, row_seeds, config, max_new_tokens, tuple(stop)))
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
        cfg: SoftThinkingConfig,
        max_new_tokens: int,
        stop: tuple[str, ...],
    ) -> list[Sample]:
        t0 = time.perf_counter()
        dev = self.device
        b = len(rows)
        k = cfg.max_topk
        prompt_ids = [encoded[pi] for pi, _ in rows]
        plen = max(len(p) for p in prompt_ids)
        budget = [
            max_new_tokens if self.max_positions is None else min(max_new_tokens, self.max_positions - len(p))
            for p in prompt_ids
        ]
        steps = max(budget)
        gens = [torch.Generator(device=dev).manual_seed(rs) for rs in row_seeds]

        soft_on = cfg.enable_soft_thinking
        noise = cfg.effective_noise if soft_on else "none"
        think_end = cfg.think_end_token_ids if soft_on else ()
        think = SamplingTensors.build(b, dev, cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p)
        if soft_on and not cfg.compat_stale_phase_mask:
            answer = SamplingTensors.build(
                b, dev, cfg.answer_temperature, cfg.answer_top_k, cfg.answer_top_p, cfg.answer_min_p
            )
            answer_temperature = cfg.answer_temperature
        else:
            answer, answer_temperature = think, cfg.temperature
        phase = PhaseTracker(
            b,
            think_end,
            soft_thinking=soft_on,
            entropy_threshold=cfg.early_stopping_entropy_threshold,
            length_threshold=cfg.early_stopping_length_threshold,
            device=dev,
        )
        params = NoiseParams.from_config(cfg)
        opts = LogProbOptions.from_config(cfg)

        # buffers indexed by [original row, step]
        buf_tokens = torch.zeros(b, steps, dtype=torch.int64, device=dev)
        buf_ids = torch.zeros(b, steps, k, dtype=torch.int64, device=dev)
        buf_q = torch.zeros(b, steps, k, dtype=torch.float32, device=dev)
        buf_soft = torch.zeros(b, steps, dtype=torch.bool, device=dev)
        buf_lp = torch.zeros(b, steps, dtype=torch.float32, device=dev)
        buf_kept = torch.ones(b, steps, dtype=torch.int64, device=dev)
        lengths = [0] * b
        finish = [""] * b
        answer_start = [-1] * b
        cold = [False] * b

        # prefill (left padding)
        input_ids = torch.full((b, plen), self.pad_id, dtype=torch.int64, device=dev)
        attn = torch.zeros(b, plen, dtype=torch.int64, device=dev)
        for r, p in enumerate(prompt_ids):
            input_ids[r, plen - len(p) :] = torch.tensor(p, device=dev)
            attn[r, plen - len(p) :] = 1
        positions = (attn.cumsum(-1) - 1).clamp_min(0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=input_ids, attention_mask=attn, position_ids=positions,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        )
        logits = out.logits[:, -1, :]
        embed = self.model.get_input_embeddings().weight
        alive = torch.arange(b, device=dev)
        alive_list = list(range(b))
        next_pos = positions[:, -1] + 1
        eos = torch.tensor(sorted(self.eos_ids), device=dev)
        tails = [""] * b if stop else None

        for t in range(steps):
            res = decode_step(
                logits, phase, think, answer, [gens[i] for i in alive_list], noise, params, k,
                opts, cfg.compat_stale_phase_mask,
            )
            buf_tokens[alive, t] = res.tokens
            buf_ids[alive, t] = res.ids
            buf_q[alive, t] = res.q.to(torch.float32)
            buf_soft[alive, t] = res.soft
            buf_lp[alive, t] = res.logprobs.to(torch.float32)  # float64 models score in float64
            buf_kept[alive, t] = res.n_kept
            ended_thinking = (~phase.thinking).tolist()
            cold_now = phase.cold_stopped.tolist()
            is_eos = torch.isin(res.tokens, eos).tolist()
            tokens_list = res.tokens.tolist()
            keep_rows: list[int] = []
            for j, r in enumerate(alive_list):
                lengths[r] = t + 1
                if soft_on and answer_start[r] < 0 and ended_thinking[j]:
                    answer_start[r] = t + 1
                cold[r] = cold[r] or cold_now[j]
                reason = ""
                if is_eos[j]:
                    reason = "eos"
                elif tails is not None:
                    tails[r] = (tails[r] + self.tokenizer.decode([tokens_list[j]]))[-256:]
                    if any(s in tails[r] for s in stop):
                        reason = "stop"
                if not reason and t + 1 >= budget[r]:
                    reason = "length" if budget[r] == max_new_tokens else "context"
                if reason:
                    finish[r] = reason
                else:
                    keep_rows.append(j)
            if not keep_rows:
                break
            x = mix_embeddings(embed, res.ids, res.weights).unsqueeze(1)
            if len(keep_rows) < len(alive_list):
                sel = torch.tensor(keep_rows, device=dev)
                cache.batch_select_indices(sel)
                x, attn, next_pos = x[sel], attn[sel], next_pos[sel]
                phase.select(sel)
                think, answer = think[sel], answer[sel]
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
        return [
            self._make_sample(
                rows[r], prompt_ids[r], lengths[r], finish[r], answer_start[r], cold[r], cfg, answer_temperature,
                noise, think_end, buf_tokens[r], buf_ids[r], buf_q[r], buf_soft[r], buf_lp[r], buf_kept[r], elapsed,
            )
            for r in range(b)
        ]

    def _make_sample(
        self, row, prompt_ids, n, finish, answer_start, cold, cfg, answer_temperature, noise, think_end,
        tokens, ids, q, soft, lp, kept, elapsed,
    ) -> Sample:
        soft_on = cfg.enable_soft_thinking
        a_start = (answer_start if answer_start >= 0 else n) if soft_on else 0
        trace = SoftTrace(
            tokens=tokens[:n].cpu(),
            ids=ids[:n].to(torch.int32).cpu(),
            q=q[:n].cpu(),
            soft=soft[:n].cpu(),
            logprobs=lp[:n].cpu(),
            noise=noise,
            tau_g=cfg.gumbel_softmax_temperature,
            temperature=cfg.temperature,
            answer_temperature=answer_temperature,
            answer_start=a_start,
            n_kept=kept[:n].to(torch.int16).cpu(),
        )
        token_ids = tokens[:n].tolist()
        body = token_ids[:-1] if finish == "eos" else token_ids
        end_seq = list(cfg.think_end_token_ids)
        if soft_on:
            split = answer_start  # first answer step, -1 if thinking never ended
        else:
            split = _end_of_subsequence(body, end_seq) if end_seq else -1
        if split >= 0:
            thinking_text = self.tokenizer.decode(body[: max(split - len(end_seq), 0)], skip_special_tokens=False)
            answer_text = self.tokenizer.decode(body[split:], skip_special_tokens=False)
        elif soft_on:  # still thinking when it stopped
            thinking_text, answer_text = self.tokenizer.decode(body, skip_special_tokens=False), ""
        else:  # discrete decoding of a text without a think-end: all of it is the answer
            thinking_text, answer_text = "", self.tokenizer.decode(body, skip_special_tokens=False)
        num_thinking = (split if split >= 0 else len(token_ids)) if (soft_on or split >= 0) else 0
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        n_soft = int(trace.soft.sum())
        top_w = None
        if n_soft:
            w = mixture_weights(trace.q[trace.soft], noise, cfg.gumbel_softmax_temperature)
            top_w = w.max(-1).values
        stats = {
            "soft_steps": float(n_soft),
            "single_candidate_share": float((trace.n_kept[trace.soft] == 1).float().mean()) if n_soft else 0.0,
            "top_weight_below_0.9_share": float((top_w < 0.9).float().mean()) if n_soft else 0.0,
        }
        return Sample(
            prompt_index=row[0],
            sample_index=row[1],
            prompt_ids=list(prompt_ids),
            token_ids=token_ids,
            text=text,
            thinking_text=thinking_text,
            answer_text=answer_text,
            finish_reason=finish,
            trace=trace,
            num_thinking_tokens=num_thinking,
            cold_stopped=cold,
            time_s=elapsed,
            stats=stats,
        )

