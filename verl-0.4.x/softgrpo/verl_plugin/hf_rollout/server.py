"""``HFSoftServer``: verl's rollout-server interface over :class:`SoftThinkingEngine` (one Ray actor).

``generate(prompt_ids, sampling_params, request_id, ...) -> TokenOutput`` queues the request; a
single batcher waits ``batch_window_s`` for concurrent requests and decodes them together (rows with
different settings are grouped). Each request draws from a generator seeded with
``derive_seed("hf_soft", rollout.seed, request_id)``. The reply carries the trace's per-step log-probs
in ``log_probs`` and, in ``extra_fields``, the serialized trace and ``global_steps`` (the weight
version verl's staleness tags need).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.torch_dtypes import PrecisionType
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.replica import TokenOutput

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.hf.engine import SoftThinkingEngine, resolve_think_end
from soft_thinking.errors import SoftGRPOError
from soft_thinking.text import derive_seed
from softgrpo.verl_plugin.fields import TRACE_KEY
from softgrpo.verl_plugin.settings import soft_config, soft_section


class HFSoftServerError(SoftGRPOError):
    """A request or a weight update the ``hf_soft`` server cannot serve."""


@dataclass
class _Request:
    prompt_ids: list[int]
    config: SoftThinkingConfig
    max_new_tokens: int
    seed: int
    return_logprobs: bool
    future: asyncio.Future = field(repr=False)


class HFSoftServer:
    """One ``hf_soft`` replica's server (Ray actor; see the module doc)."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int, batch_window_s: float = 0.05) -> None:
        self.config: RolloutConfig = omega_conf_to_dataclass(config)
        self.model_config: HFModelConfig = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        self.batch_window_s = batch_window_s
        self.section = soft_section(self.config.custom)
        dtype = PrecisionType.to_dtype(self.config.dtype)
        model = AutoModelForCausalLM.from_pretrained(self.model_config.local_path, dtype=dtype,
                                                     attn_implementation="sdpa")
        self.tokenizer = self.model_config.tokenizer
        self.engine = SoftThinkingEngine(model, self.tokenizer, device="cpu")
        self.tied = bool(getattr(model.config, "tie_word_embeddings", False))
        self.think_end = () if self.section.get("soft_until_eos") else resolve_think_end(self.tokenizer)
        self.global_steps = 0  # the weights loaded from the checkpoint are version 0
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._engine_lock = asyncio.Lock()
        self._batcher: asyncio.Task | None = None
        self.stats = {"requests": 0, "batches": 0, "generate_s": 0.0}

    # -- verl's server interface ----------------------------------------------------------------
    async def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any], request_id: str,
                       image_data: Any = None, video_data: Any = None, **kwargs: Any) -> TokenOutput:
        if image_data or video_data or kwargs.get("audio_data"):
            raise HFSoftServerError("hf_soft serves text prompts only")
        params = dict(sampling_params)
        if float(params.get("repetition_penalty", 1.0)) != 1.0:
            raise HFSoftServerError(f"repetition_penalty={params['repetition_penalty']}: allowed 1.0")
        prompt_ids = [int(t) for t in prompt_ids]
        request = _Request(
            prompt_ids=prompt_ids,
            config=soft_config(self.section, params.get("temperature", 1.0), params.get("top_p", 1.0),
                               params.get("top_k", -1), self.think_end),
            max_new_tokens=self._max_new_tokens(len(prompt_ids), params),
            seed=derive_seed("hf_soft", self.config.seed, request_id),
            return_logprobs=bool(params.get("logprobs", False)),
            future=asyncio.get_running_loop().create_future(),
        )
        self._pending.append(request)
        self._wake.set()
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._batch_loop())
        return await request.future

    def _max_new_tokens(self, prompt_len: int, params: dict[str, Any]) -> int:
        cap = self.config.response_length
        for key in ("max_new_tokens", "max_tokens"):
            if key in params:
                cap = min(cap, int(params[key]))
        budget = self.config.prompt_length + self.config.response_length - prompt_len
        n = min(cap, budget)
        if n < 1:
            raise HFSoftServerError(f"prompt of {prompt_len} tokens leaves no room for a response")
        return n

    async def _batch_loop(self) -> None:
        while self._pending:
            await asyncio.sleep(self.batch_window_s)
            batch, self._pending = self._pending, []
            groups: dict[tuple[str, int], list[_Request]] = {}
            for r in batch:
                key = (json.dumps(r.config.to_dict(), sort_keys=True), r.max_new_tokens)
                groups.setdefault(key, []).append(r)
            for (_, max_new), reqs in groups.items():
                cfg = reqs[0].config
                try:
                    async with self._engine_lock:
                        samples = await asyncio.to_thread(self._generate, reqs, cfg, max_new)
                except Exception as err:  # every waiting request gets the error, nothing hangs
                    for r in reqs:
                        if not r.future.done():
                            r.future.set_exception(err)
                    continue
                for r, s in zip(reqs, samples):
                    if not r.future.done():
                        r.future.set_result(self._reply(r, s))

    def _generate(self, reqs: list[_Request], cfg: SoftThinkingConfig, max_new: int):
        t0 = time.perf_counter()
        out = self.engine.generate([r.prompt_ids for r in reqs], cfg, n=1, max_new_tokens=max_new,
                                   seeds=[r.seed for r in reqs])
        self.stats["requests"] += len(reqs)
        self.stats["batches"] += 1
        self.stats["generate_s"] += time.perf_counter() - t0
        return out

    def _reply(self, request: _Request, sample: Any) -> TokenOutput:
        trace = sample.trace
        return TokenOutput(
            token_ids=list(sample.token_ids),
            log_probs=trace.logprobs.tolist() if request.return_logprobs else None,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps, TRACE_KEY: trace.to_bytes()},
        )

    # -- weights --------------------------------------------------------------------------------
    async def load_weights(self, state: dict[str, torch.Tensor], global_steps: int | None) -> None:
        """Copy a full state dict (HF names) into the model; every parameter must be covered."""
        async with self._engine_lock:
            own = self.engine.model.state_dict()
            unknown = sorted(set(state) - set(own))
            missing = sorted(set(own) - set(state) - ({"lm_head.weight"} if self.tied else set()))
            if unknown or missing:
                raise HFSoftServerError(f"weight update: unknown names {unknown[:5]}, missing names {missing[:5]}")
            with torch.no_grad():
                for name, tensor in state.items():
                    own[name].copy_(tensor.to(own[name].dtype))
            if global_steps is not None:
                self.global_steps = int(global_steps)

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = int(global_steps)

    async def get_stats(self) -> dict[str, float]:
        return dict(self.stats)

    # -- lifecycle calls verl makes; the model stays in host memory -------------------------------
    async def wake_up(self) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False) -> None:
        return None

    async def resume_generation(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None
