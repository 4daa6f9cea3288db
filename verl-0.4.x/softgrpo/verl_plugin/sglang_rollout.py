"""SofT-GRPO's SGLang rollout for verl 0.9.1 (GPU; needs ``sglang``, never imported on CPU).

* ``SoftSGLangHttpServer(SGLangHttpServer)``:

  - ``launch_server``: on the soft arm, refuses to start when ``SOFTGRPO_SGLANG`` is off in its
    environment (the SGLang plug-in would stay dormant); after verl's ``launch_server`` it wraps the
    tokenizer manager's ``generate_request`` to keep each request's ``meta_info["softgrpo"]`` (the
    SGLang plug-in's trace) and sends one 2-token soft request with the run's settings, which must
    come back with its trace (:func:`self_test`), so a server without a working plug-in stops the run
    at start-up, before any rollout;
  - ``generate``: soft arm -- asks for soft decoding (:func:`~softgrpo.verl_plugin.sglang_trace.sglang_soft_params`),
    runs verl's own ``generate``, then moves the trace into ``extra_fields["softgrpo_trace"]`` and the
    per-step log-densities into ``log_probs``; discrete arm -- verl's request unchanged (stock SGLang
    sampling with verl's temperature/top-p/top-k) and a discrete trace built from SGLang's token
    log-probs (:func:`~softgrpo.verl_plugin.sglang_trace.discrete_sglang_trace`), so both arms run the
    same agent loop, trainer and replay metrics.
* ``SoftSGLangReplica(SGLangReplica)``: verl's replica with ``server_class`` swapped; registered under
  the name ``sglang`` (verl branches on that name and keys its weight-sync adapter by it) by a loader
  that runs verl's own sglang loader first (:mod:`softgrpo.verl_plugin.registration`).

Sync trainer mode only (``softgrpo_sync``): the async trainers' ``FullyAsyncLLMServerClient`` rebuilds
the ``TokenOutput`` and drops ``extra_fields``. Prefill/decode disaggregation is not supported.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from verl.workers.rollout.replica import TokenOutput
from verl.workers.rollout.sglang_rollout.async_sglang_server import SGLangHttpServer, SGLangReplica

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.sglang.settings import MODE_ENV, plugin_mode
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.fields import TRACE_KEY, attach_soft_trace
from softgrpo.verl_plugin.settings import soft_config, soft_section
from softgrpo.verl_plugin.sglang_trace import (
    META_KEY,
    decode_sglang_trace,
    discrete_sglang_trace,
    request_seed,
    sglang_soft_params,
)

SELF_TEST_RID = "softgrpo-selftest"
NOT_ACTIVE = (f"the SofT-GRPO SGLang plug-in is not active in this rollout server: no meta_info[{META_KEY!r}] "
              "for a soft request (is the softgrpo distribution with the sglang.srt.plugins entry point installed "
              "in this environment, and SGLANG_PLUGINS unset or listing it? see the server log)")


class SoftSGLangHttpServer(SGLangHttpServer):
    async def launch_server(self, *args: Any, **kwargs: Any) -> None:
        if self._disaggregation_role != "null":
            raise SoftGRPOError("SofT-GRPO's SGLang rollout does not support prefill/decode disaggregation")
        self._soft_section = soft_section(self.config.custom)
        self._soft_on = bool(self._soft_section.get("enable_soft_thinking", SoftThinkingConfig().enable_soft_thinking))
        if self._soft_on and plugin_mode(os.environ) == "off":
            raise SoftGRPOError(f"{MODE_ENV}={os.environ.get(MODE_ENV)!r} in the SGLang rollout server's environment: "
                                "allowed 'require' or 'on' for soft thinking (set "
                                f"ray_kwargs.ray_init.runtime_env.env_vars.{MODE_ENV}; softgrpo.main_ppo does)")
        await super().launch_server(*args, **kwargs)
        self._soft_meta: dict[str, Any] = {}
        self._think_end = ()
        if not self._soft_section.get("soft_until_eos") and self.node_rank == 0:
            from soft_thinking.engines.hf.engine import resolve_think_end

            self._think_end = resolve_think_end(self.model_config.tokenizer)
        manager = getattr(self, "tokenizer_manager", None)
        if manager is not None and self.node_rank == 0:  # node 0 serves requests
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
            if self._soft_on:
                await self.self_test()

    async def self_test(self) -> None:
        """A 2-token soft request with the run's settings must return one trace row per token."""
        from sglang.srt.managers.io_struct import GenerateReqInput

        cfg = self._config({"temperature": self.config.temperature, "top_p": self.config.top_p,
                            "top_k": self.config.top_k})
        rid = f"{SELF_TEST_RID}-{self.replica_rank}"
        params = sglang_soft_params({"max_new_tokens": 2}, cfg, request_seed(rid))
        req = GenerateReqInput(rid=rid, input_ids=[1, 2, 3], sampling_params=params, return_logprob=False)
        out = await self.tokenizer_manager.generate_request(req, None).__anext__()
        rows = self._soft_meta.pop(rid, None)
        if rows is None or len(rows) != len(out.get("output_ids") or ()):
            finish = (out.get("meta_info") or {}).get("finish_reason")
            raise SoftGRPOError(f"{NOT_ACTIVE}; self-test request finished with {finish!r}")

    def _config(self, sampling_params: dict[str, Any]) -> SoftThinkingConfig:
        return soft_config(self._soft_section, sampling_params.get("temperature", 1.0),
                           sampling_params.get("top_p", 1.0), sampling_params.get("top_k", -1), self._think_end)

    async def generate(self, prompt_ids: Any, sampling_params: dict[str, Any], request_id: str,
                       *args: Any, **kwargs: Any) -> TokenOutput:
        cfg = self._config(sampling_params)
        if not cfg.enable_soft_thinking:
            out = await super().generate(prompt_ids, dict(sampling_params), request_id, *args, **kwargs)
            self._soft_meta.pop(str(request_id), None)  # rows of a batch shared with soft requests: not ours
            if out.stop_reason == "aborted" or not out.token_ids:
                return out
            out.extra_fields[TRACE_KEY] = discrete_sglang_trace(out.token_ids, out.log_probs, cfg).to_bytes()
            return out
        seed = request_seed(str(request_id))
        out = await super().generate(prompt_ids, sglang_soft_params(dict(sampling_params), cfg, seed), request_id,
                                     *args, **kwargs)
        payload = self._soft_meta.pop(str(request_id), None)
        if payload is None:
            if out.stop_reason == "aborted" or not out.token_ids:
                return out
            raise SoftGRPOError(f"SGLang returned no meta_info[{META_KEY!r}] for request {request_id}: {NOT_ACTIVE}")
        trace = decode_sglang_trace(payload, out.token_ids, cfg, seed)  # checks one row per token, same tokens
        attach_soft_trace(out, trace)
        return out


class SoftSGLangReplica(SGLangReplica):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_class = ray.remote(SoftSGLangHttpServer)
