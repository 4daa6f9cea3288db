"""What verl 0.9.1 needs beyond the platform to train on CPU (active only with ``VERL_PLATFORM=cpu``).

* :class:`CPUFSDPEngineWithLMHead`: verl builds every ``forward_only`` engine (the reference model)
  with ``CPUOffloadPolicy(pin_memory=True)``, and pinning needs an accelerator. On the host the
  offload is pointless, so the reference is built like a trainable module (``forward_only`` is
  lowered for the duration of ``_build_fsdp_module`` only).
* :func:`patch_process_group_backend`, the one runtime patch: ``TrainingWorker.__init__`` calls
  ``initialize_global_process_group_ray()`` without a backend, and verl builds
  ``"cpu:gloo,cpu:gloo"``, which torch rejects. The name in ``verl.workers.engine_workers`` is
  rebound to a wrapper that passes ``backend="cpu:gloo"`` (what verl's ``CheckpointEngineWorker``
  already passes). Idempotent.
"""

from __future__ import annotations

from typing import Any

from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from softgrpo.verl_plugin.engine import SoftReplayMixin

_PATCH_MARK = "_softgrpo_cpu_gloo"


class CPUFSDPEngineWithLMHead(FSDPEngineWithLMHead):
    """``FSDPEngineWithLMHead`` whose reference model is built without pinned-memory offload."""

    def _build_fsdp_module(self, module):
        forward_only = self.engine_config.forward_only
        self.engine_config.forward_only = False
        try:
            return super()._build_fsdp_module(module)
        finally:
            self.engine_config.forward_only = forward_only


class SoftFSDPEngineWithLMHeadCPU(SoftReplayMixin, CPUFSDPEngineWithLMHead):
    """The soft-replay engine on the CPU platform."""


def patch_process_group_backend() -> None:
    import verl.workers.engine_workers as engine_workers

    original = engine_workers.initialize_global_process_group_ray
    if getattr(original, _PATCH_MARK, False):
        return

    def initialize_global_process_group_ray(timeout_second: Any = None, backend: str | None = None) -> Any:
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    setattr(initialize_global_process_group_ray, _PATCH_MARK, True)
    engine_workers.initialize_global_process_group_ray = initialize_global_process_group_ray


def process_group_backend_patched() -> bool:
    import verl.workers.engine_workers as engine_workers

    return bool(getattr(engine_workers.initialize_global_process_group_ray, _PATCH_MARK, False))
