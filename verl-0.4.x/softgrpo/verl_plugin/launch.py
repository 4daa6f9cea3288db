"""Start-up settings that ``softgrpo.main_ppo`` derives once, on the driver, before Ray starts.

* **Attention** (:func:`apply_attention`): verl's ``HFModelConfig`` loads every model with
  ``override_config.get("attn_implementation", "flash_attention_2")`` (``verl/workers/config/model.py``);
  without the ``flash_attn`` package transformers 5.9 then tries to fetch a kernel from the hub and
  fails offline. Unless the config names one, the run uses ``flash_attention_2`` when ``flash_attn``
  imports here and ``sdpa`` otherwise, written into ``actor_rollout_ref.model.override_config`` (actor,
  reference and rollout share that model config) and ``critic.model.override_config`` (the critic, when
  one is used), and logged. ``flash_attention_2`` named explicitly without ``flash_attn`` is an error.
* **The SGLang plug-in** (:func:`sglang_env`): with ``rollout.name=sglang`` the rollout servers (and the
  schedulers they spawn) read ``SOFTGRPO_SGLANG`` and ``SOFTGRPO_SGLANG_CONFIG``
  (:mod:`soft_thinking.engines.sglang.settings`). The soft arm gets ``require`` (a server the plug-in
  cannot serve refuses to start) and the server-wide soft settings
  (:data:`~soft_thinking.engines.sglang.hooks.SERVER_FIELDS`) from the run's own ``soft_thinking``
  section; the discrete arm gets ``off`` (stock SGLang). Both go into
  ``ray_kwargs.ray_init.runtime_env.env_vars``, which Ray gives every worker and actor of the job.
* **The vLLM plug-in** (:func:`vllm_env`): with ``rollout.name=vllm`` the soft arm's servers and their
  workers read ``SOFTGRPO_VLLM_CONFIG`` (the same server-wide settings, from the ``soft_thinking``
  section), ``SOFTGRPO_VLLM_MAX_TOPK`` (K) and ``SOFTGRPO_VLLM_WIDTH`` (the candidate width: at least K
  and the soft ``top_k``) (:mod:`soft_thinking.engines.vllm.settings`); the plug-in is switched on per
  server by :mod:`softgrpo.verl_plugin.vllm_rollout` (soft arm only), so the discrete arm gets nothing
  and runs stock vLLM.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import asdict
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.errors import SoftGRPOError

ATTN_KEYS = ("actor_rollout_ref.model.override_config.attn_implementation",
             "critic.model.override_config.attn_implementation")
ATTN_ALLOWED = ("sdpa", "eager", "flash_attention_2")
ENV_KEY = "ray_kwargs.ray_init.runtime_env.env_vars"
MODE_ENV = "SOFTGRPO_SGLANG"
CONFIG_ENV = "SOFTGRPO_SGLANG_CONFIG"
VLLM_CONFIG_ENV = "SOFTGRPO_VLLM_CONFIG"
VLLM_MAX_TOPK_ENV = "SOFTGRPO_VLLM_MAX_TOPK"
VLLM_WIDTH_ENV = "SOFTGRPO_VLLM_WIDTH"
VLLM_DEFAULT_WIDTH = 32


class LaunchError(SoftGRPOError):
    """A start-up setting the run cannot use."""


def flash_attn_importable() -> tuple[bool, str]:
    """Whether ``flash_attn`` imports in this process, and why not."""
    try:
        importlib.import_module("flash_attn")
    except (ImportError, OSError) as err:  # OSError: a flash_attn build whose CUDA library does not load
        return False, f"{type(err).__name__}: {err}"
    return True, "flash_attn imports"


def apply_attention(config: DictConfig) -> str:
    """Fill the attention keys that are unset (module doc); return the implementation chosen."""
    ok, why = flash_attn_importable()
    chosen = "flash_attention_2" if ok else "sdpa"
    for key in ATTN_KEYS:
        current = OmegaConf.select(config, key, default=None)
        if current is None:
            parent = key.rsplit(".", 1)[0]
            if OmegaConf.select(config, parent, default=None) is None:
                continue
            with open_dict(config):
                OmegaConf.update(config, key, chosen, merge=False)
        elif current not in ATTN_ALLOWED:
            raise LaunchError(f"{key}={current!r} is invalid: allowed {ATTN_ALLOWED}")
        elif current == "flash_attention_2" and not ok:
            raise LaunchError(f"{key}=flash_attention_2 but flash_attn does not import here ({why}): allowed sdpa "
                              "or eager, or install flash-attn (transformers would try a hub download otherwise)")
    used = sorted({str(OmegaConf.select(config, k)) for k in ATTN_KEYS if OmegaConf.select(config, k) is not None})
    print(f"softgrpo: attention implementation {', '.join(used)} ({why})", file=sys.stderr, flush=True)
    return chosen


def server_settings(soft: SoftThinkingConfig) -> str:
    """``SOFTGRPO_SGLANG_CONFIG``: the batch-level soft settings every request of a server shares, as JSON."""
    from soft_thinking.engines.sglang.hooks import SERVER_FIELDS

    d = asdict(soft)
    return json.dumps({k: list(d[k]) if isinstance(d[k], tuple) else d[k] for k in SERVER_FIELDS}, sort_keys=True)


def sglang_env(config: DictConfig, soft: SoftThinkingConfig) -> dict[str, str]:
    """The plug-in's variables for an SGLang rollout (empty for other rollouts); checks the user's own."""
    if OmegaConf.select(config, "actor_rollout_ref.rollout.name") != "sglang":
        return {}
    current = OmegaConf.select(config, ENV_KEY, default=None) or {}
    want = {MODE_ENV: "require" if soft.enable_soft_thinking else "off"}
    if soft.enable_soft_thinking:
        want[CONFIG_ENV] = server_settings(soft)
    mode = current.get(MODE_ENV)
    if mode is not None:
        if soft.enable_soft_thinking and str(mode).strip().lower() not in ("on", "require"):
            raise LaunchError(f"{ENV_KEY}.{MODE_ENV}={mode!r} is invalid for the soft arm: allowed 'require' "
                              "or 'on' (else SGLang decodes discretely and returns no soft trace)")
        want[MODE_ENV] = str(mode)
    given = current.get(CONFIG_ENV)
    if given is not None and soft.enable_soft_thinking and _as_json(given) != json.loads(want[CONFIG_ENV]):
        raise LaunchError(f"{ENV_KEY}.{CONFIG_ENV}={given!r} differs from the soft_thinking section "
                          f"({want[CONFIG_ENV]}): set soft_thinking.* instead (the variable is derived from it)")
    return want


def _as_json(raw: Any, name: str = CONFIG_ENV) -> Any:
    try:
        return json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise LaunchError(f"{ENV_KEY}.{name}={raw!r} is not JSON ({err})") from None


def vllm_env(config: DictConfig, soft: SoftThinkingConfig) -> dict[str, str]:
    """The vLLM plug-in's variables for a soft vLLM rollout (empty otherwise); checks the user's own."""
    if OmegaConf.select(config, "actor_rollout_ref.rollout.name") != "vllm" or not soft.enable_soft_thinking:
        return {}
    current = OmegaConf.select(config, ENV_KEY, default=None) or {}
    want = {VLLM_CONFIG_ENV: server_settings(soft), VLLM_MAX_TOPK_ENV: str(soft.max_topk),
            VLLM_WIDTH_ENV: str(max(VLLM_DEFAULT_WIDTH, soft.max_topk, soft.top_k))}
    given = current.get(VLLM_CONFIG_ENV)
    if given is not None and _as_json(given, VLLM_CONFIG_ENV) != json.loads(want[VLLM_CONFIG_ENV]):
        raise LaunchError(f"{ENV_KEY}.{VLLM_CONFIG_ENV}={given!r} differs from the soft_thinking section "
                          f"({want[VLLM_CONFIG_ENV]}): set soft_thinking.* instead (the variable is derived from it)")
    for name in (VLLM_MAX_TOPK_ENV, VLLM_WIDTH_ENV):
        value = current.get(name)
        if value is None:
            continue
        if not str(value).isdigit() or int(value) < int(want[name]):
            raise LaunchError(f"{ENV_KEY}.{name}={value!r} is invalid: allowed an integer >= {want[name]} "
                              "(soft_thinking.max_topk / top_k must fit)")
        want[name] = str(value)
    return want


def apply_launch_settings(config: DictConfig, soft: SoftThinkingConfig) -> dict[str, str]:
    """Attention keys and the SGLang or vLLM variables into ``config``; returns the variables added."""
    apply_attention(config)
    engine = OmegaConf.select(config, "actor_rollout_ref.rollout.name")
    env = sglang_env(config, soft) or vllm_env(config, soft)
    if env:
        with open_dict(config):
            for key, value in env.items():
                OmegaConf.update(config, f"{ENV_KEY}.{key}", value, merge=False)
        name = {"sglang": "SGLang", "vllm": "vLLM"}.get(engine, engine)
        print(f"softgrpo: {name} rollout servers get {' '.join(f'{k}={v}' for k, v in env.items())}",
              file=sys.stderr, flush=True)
    return env
