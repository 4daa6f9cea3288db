"""SofT-GRPO's SGLang rollout for verl 0.9.1 (GPU; needs ``sglang``, never imported on CPU).

* ``SoftSGLangHttpServer(SGLangHttpServer)``: after verl's ``launch_server`` it wraps the tokenizer
  manager's ``generate_request`` to keep each request's ``meta_info["softgrpo"]`` (the SGLang
  plug-in's trace); ``generate`` asks for soft decoding (:func:`~softgrpo.verl_plugin.sglang_trace.sglang_soft_params`),
  runs verl's own ``generate``, then moves the trace into ``extra_fields["softgrpo_trace"]`` and the
  per-step log-densities into ``log_probs``.
* ``SoftSGLangReplica(SGLangReplica)``: verl's replica with ``server_class`` swapped; registered under
  the name ``sglang`` (verl branches on that name and keys its weight-sync adapter by it) by a loader
  that runs verl's own sglang loader first (:mod:`softgrpo.verl_plugin.registration`).

Sync trainer mode only (``softgrpo_sync``): the async trainers' ``FullyAsyncLLMServerClient`` rebuilds
the ``TokenOutput`` and drops ``extra_fields``. Prefill/decode disaggregation is not supported.
"""

from __future__ import annotations

from typing import Any

import ray
from verl.workers.rollout.replica import TokenOutput
from verl.workers.rollout.sglang_rollout.async_sglang_server import SGLangHttpServer, SGLangReplica

from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.fields import TRACE_KEY
from softgrpo.verl_plugin.settings import soft_config, soft_section
from softgrpo.verl_plugin.sglang_trace import META_KEY, decode_sglang_trace, request_seed, sglang_soft_params


class SoftSGLangHttpServer(SGLangHttpServer):
    async def launch_server(self, *args: Any, **kwargs: Any) -> None:
        if self._disaggregation_role != "null":
            raise SoftGRPOError("SofT-GRPO's SGLang rollout does not support prefill/decode disaggregation")
        await super().launch_server(*args, **kwargs)
        self._soft_section = soft_section(self.config.custom)
        self._soft_meta: dict[str, Any] = {}
        self._think_end = ()
        if not self._soft_section.get("soft_until_eos") and self.node_rank == 0:
            from soft_thinking.engines.hf.engine import resolve_think_end

            self._think_end = resolve_think_end(self.model_config.tokenizer)
        manager = getattr(self, "tokenizer_manager", None)
        if manager is not None:  # node 0 serves requests
            original = manager.generate_request

            def generate_request(obj: Any, request: Any = None):
                stream = original(obj, request)
                soft_meta = self._soft_meta

                async def keep_trace():
                    async for out in stream:
                        payload = (out.get("meta_info") or {}).pop(META_KEY, None)
                        if payload is not None:
                            soft_meta[str(obj.rid)] = payload
                        yield out

                return keep_trace()

            manager.generate_request = generate_request

    async def generate(self, prompt_ids: Any, sampling_params: dict[str, Any], request_id: str,
                       *args: Any, **kwargs: Any) -> TokenOutput:
        cfg = soft_config(self._soft_section, sampling_params.get("temperature", 1.0),
                          sampling_params.get("top_p", 1.0), sampling_params.get("top_k", -1), self._think_end)
        seed = request_seed(str(request_id))
        out = await super().generate(prompt_ids, sglang_soft_params(dict(sampling_params), cfg, seed), request_id,
                                     *args, **kwargs)
        payload = self._soft_meta.pop(str(request_id), None)
        if payload is None:
            if out.stop_reason == "aborted" or not out.token_ids:
                return out
            raise SoftGRPOError(
                f"SGLang returned no meta_info[{META_KEY!r}] for request {request_id}: is the SofT-GRPO SGLang "
                "plug-in installed and enabled in the server?"
            )
        trace = decode_sglang_trace(payload, out.token_ids, cfg, seed)  # checks one row per token, same tokens
        out.extra_fields[TRACE_KEY] = trace.to_bytes()
        if out.log_probs is not None:
            out.log_probs = trace.logprobs.tolist()  # soft steps: densities, not token log-probs
        return out


class SoftSGLangReplica(SGLangReplica):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_class = ray.remote(SoftSGLangHttpServer)
