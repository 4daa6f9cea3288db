"""A stand-in for sglang 0.5.12 at the one boundary verl's SGLang server uses for generation.

sglang is not installed on CPU. :func:`install_sglang_modules` puts into ``sys.modules`` only the
sglang modules (and names) that ``verl.workers.rollout.sglang_rollout.async_sglang_server`` and its
imports (``sglang_rollout.py``, ``http_server_engine.py``) import, as inert placeholders, except:

* ``Engine._launch_subprocesses`` returns a :class:`StandInTokenizerManager`, whose
  ``generate_request(obj, request)`` answers like sglang 0.5.12 with our SGLang plug-in:

  - the plug-in's mode comes from ``SOFTGRPO_SGLANG`` in this process (the rollout server's Ray
    runtime env; the schedulers inherit it). ``off``: the plug-in is dormant, every request is
    decoded discretely and no ``meta_info['softgrpo']`` comes back;
  - otherwise the request's ``custom_params`` are parsed by the plug-in's own
    :class:`~soft_thinking.engines.sglang.hooks.PluginState` (``SOFTGRPO_SGLANG_CONFIG`` included), so
    a server-wide setting that differs from the request's is refused as on a real server;
  - a soft request gets one packed row per output token from the plug-in's own codec
    (``pack_rows`` / ``RowBytes``: the real wire format); a discrete request gets none;
  - ``output_token_logprobs`` are ``(logprob, token, None)`` triples when ``return_logprob``; at soft
    steps the plug-in replaces them with the step's log-density, as ``around_sample`` does.

The tokens are a deterministic function of the prompt, so both arms are reproducible.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from soft_thinking.core.batch import BatchStep
from soft_thinking.engines.sglang.codec import TRACE_KEY, RowBytes, pack_rows
from soft_thinking.engines.sglang.hooks import PluginState
from soft_thinking.engines.sglang.settings import SamplingView, plugin_mode

SGLANG_VERSION = "0.5.12"
N_TOKENS = 6  # tokens per response (capped by max_new_tokens)
N_SOFT = 3  # soft (thinking) steps of a soft response; the rest is the answer phase


class _Inert:
    """A placeholder for an sglang name verl imports but generation never calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


@dataclasses.dataclass(init=False)
class StandInServerArgs:
    """``ServerArgs``: verl passes keyword arguments and looks up ``dataclasses.fields``."""

    enable_metrics: bool = False
    enable_weights_cpu_backup: bool = False

    def __init__(self, **kwargs: Any) -> None:
        self.enable_metrics = False
        self.__dict__.update(kwargs)


class GenerateReqInput:
    """``io_struct.GenerateReqInput``: the fields verl's ``generate`` sets."""

    def __init__(self, rid: str, input_ids: list[int], sampling_params: dict[str, Any], return_logprob: bool = False,
                 **kwargs: Any) -> None:
        self.rid, self.input_ids, self.sampling_params, self.return_logprob = rid, input_ids, sampling_params, return_logprob
        self.__dict__.update(kwargs)


def response_tokens(prompt_ids: list[int], n: int, vocab_size: int) -> list[int]:
    """The stand-in's deterministic response (no EOS logic: ``length`` finish)."""
    start = sum(int(t) for t in prompt_ids)
    return [5 + (start + 7 * i) % (vocab_size - 10) for i in range(n)]


def discrete_logprobs(n: int) -> list[float]:
    return [-0.25 - 0.125 * i for i in range(n)]


def soft_rows(tokens: list[int], k_max: int, vocab_size: int) -> tuple[list[bytes], list[float]]:
    """Packed rows of a response whose first ``N_SOFT`` steps are soft; their log-densities."""
    t = len(tokens)
    soft = torch.tensor([i < N_SOFT for i in range(t)])
    ids = torch.zeros(t, k_max, dtype=torch.long)
    ids[:, 0] = torch.tensor(tokens)
    q = torch.zeros(t, k_max)
    for i in range(min(N_SOFT, t)):
        ids[i, 1:3] = torch.tensor([(tokens[i] + 1) % vocab_size, (tokens[i] + 2) % vocab_size])
        q[i, :3] = torch.tensor([-0.5, -1.0 - 0.25 * i, -2.0])
    logprobs = torch.tensor([2.5 - 0.5 * i if i < N_SOFT else -0.3 for i in range(t)], dtype=torch.float64)
    step = BatchStep(tokens=torch.tensor(tokens), ids=ids, q=q, weights=torch.zeros(t, k_max), soft=soft,
                     logprobs=logprobs, token_logprobs=torch.zeros(t), entropy=torch.zeros(t),
                     n_kept=torch.where(soft, 3, 1), answer=~soft, truncated=torch.zeros(t, dtype=torch.bool),
                     forced=torch.zeros(t, dtype=torch.bool))
    packed = RowBytes(pack_rows(step))
    return [packed[i] for i in range(t)], logprobs.float().tolist()


class StandInTokenizerManager:
    """SGLang's ``TokenizerManager`` as verl's server uses it (module doc)."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.requests: list[GenerateReqInput] = []
        self.server_status: Any = None

    def generate_request(self, obj: GenerateReqInput, request: Any = None):
        self.requests.append(obj)
        return self._respond(obj)

    async def _respond(self, obj: GenerateReqInput):
        yield self.response(obj)

    def response(self, obj: GenerateReqInput) -> dict[str, Any]:
        sp = dict(obj.sampling_params)
        custom = dict(sp.get("custom_params") or {})
        soft = None
        k_max = 32
        if plugin_mode(os.environ) != "off":
            state = PluginState.from_env(os.environ)
            k_max = state.k_max
            view = SamplingView(**{k: sp[k] for k in ("temperature", "top_p", "top_k", "min_p") if k in sp})
            soft = state.parse(custom, view, self.vocab_size)  # the verify hook: a bad request raises here
        tokens = response_tokens(obj.input_ids, min(N_TOKENS, int(sp["max_new_tokens"])), self.vocab_size)
        meta: dict[str, Any] = {"finish_reason": {"type": "length", "length": len(tokens)}, "num_retractions": 0}
        logprobs = discrete_logprobs(len(tokens))
        if soft is not None:
            rows, logprobs = soft_rows(tokens, k_max, self.vocab_size)
            meta[TRACE_KEY] = rows
        if obj.return_logprob:
            meta["output_token_logprobs"] = [(lp, tok, None) for lp, tok in zip(logprobs, tokens)]
        return {"output_ids": tokens, "meta_info": meta}


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def sglang_modules(manager: StandInTokenizerManager) -> dict[str, types.ModuleType]:
    """The sglang modules verl's SGLang server imports, with the names it imports."""

    class Engine:
        @staticmethod
        def _launch_subprocesses(server_args: Any, **kwargs: Any):
            manager.server_args = server_args
            return manager, _Inert(), {}

    inert = {name: _Inert for name in ("ContinueGenerationReqInput", "PauseGenerationReqInput",
                                       "ReleaseMemoryOccupationReqInput", "ResumeMemoryOccupationReqInput",
                                       "UpdateWeightsFromTensorReqInput")}
    mods = {
        "sglang": _module("sglang", __version__=SGLANG_VERSION),
        "sglang.srt": _module("sglang.srt"),
        "sglang.srt.entrypoints": _module("sglang.srt.entrypoints"),
        "sglang.srt.entrypoints.engine": _module(
            "sglang.srt.entrypoints.engine", _set_envs_and_config=_Inert, init_tokenizer_manager=_Inert,
            run_scheduler_process=_Inert, run_detokenizer_process=_Inert),
        "sglang.srt.entrypoints.http_server": _module(
            "sglang.srt.entrypoints.http_server", ServerArgs=StandInServerArgs, _GlobalState=_Inert,
            app=types.SimpleNamespace(), set_global_state=lambda state: None, Engine=Engine, launch_server=_Inert),
        "sglang.srt.entrypoints.EngineBase": _module("sglang.srt.entrypoints.EngineBase", EngineBase=object),
        "sglang.srt.managers": _module("sglang.srt.managers"),
        "sglang.srt.managers.io_struct": _module("sglang.srt.managers.io_struct", GenerateReqInput=GenerateReqInput,
                                                 **inert),
        "sglang.srt.managers.tokenizer_manager": _module(
            "sglang.srt.managers.tokenizer_manager", ServerStatus=types.SimpleNamespace(Up="Up", Starting="Starting")),
        "sglang.srt.server_args": _module("sglang.srt.server_args", ServerArgs=StandInServerArgs),
        "sglang.srt.utils": _module("sglang.srt.utils", MultiprocessingSerializer=_Inert, assert_pkg_version=_Inert,
                                    is_cuda=lambda: False, set_prometheus_multiproc_dir=_Inert, set_ulimit=_Inert,
                                    kill_process_tree=_Inert),
        "sglang.srt.weight_sync": _module("sglang.srt.weight_sync"),
        "sglang.srt.weight_sync.utils": _module("sglang.srt.weight_sync.utils",
                                                _preprocess_tensor_for_update_weights=_Inert, update_weights=_Inert),
    }
    for name, mod in mods.items():  # parents expose their children, as real packages do
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(mods[parent], child, mod)
    return mods


VERL_SGLANG_MODULES = ("verl.workers.rollout.sglang_rollout.async_sglang_server",
                       "verl.workers.rollout.sglang_rollout.sglang_rollout",
                       "verl.workers.rollout.sglang_rollout.http_server_engine",
                       "softgrpo.verl_plugin.sglang_rollout")


@contextmanager
def sglang_standin(manager: StandInTokenizerManager) -> Iterator[None]:
    """The stand-in modules in ``sys.modules`` for the block; verl's sglang modules re-imported against them."""
    saved = {name: sys.modules.get(name) for name in (*sglang_modules(manager), *VERL_SGLANG_MODULES)}
    for name in VERL_SGLANG_MODULES:
        sys.modules.pop(name, None)
    sys.modules.update(sglang_modules(manager))
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
