"""``HFSoftServerAdapter``: the ``BaseRollout`` verl builds in every trainer worker for ``hf_soft``.

verl's sync trainer syncs weights with ``ActorRolloutRefWorker.update_weights(mode="naive")``, which
calls ``update_weights(per_tensor_param, ...)`` here on every rank. The generator gathers FSDP shards
(``DTensor.full_tensor()`` is a collective), so every rank drains it completely; the replica leader
(rollout rank 0 of its replica) then loads the full state dict into its server, which reports the
version as ``extra_fields["global_steps"]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout

from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.hf_rollout import server_actor_name


class HFSoftServerAdapter(BaseRollout):
    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1, **kwargs: Any) -> None:
        super().__init__(config, model_config, device_mesh)
        world = (self.config.tensor_model_parallel_size * self.config.data_parallel_size
                 * self.config.pipeline_model_parallel_size)
        rank = int(os.environ["RANK"])
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.is_leader = rank % world == 0
        self._server = None
        self.syncs = 0

    def _server_handle(self) -> Any:
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None  # the server keeps its model in host memory

    async def release(self) -> None:
        return None

    async def update_weights(self, weights: Iterable[tuple[str, torch.Tensor]], wire_format: str = "named_tensors",
                             **kwargs: Any) -> None:
        if wire_format != "named_tensors":
            raise SoftGRPOError(f"hf_soft weight sync: wire_format={wire_format!r}, allowed 'named_tensors'")
        if kwargs.get("peft_config") is not None:
            raise SoftGRPOError("hf_soft weight sync: LoRA adapters are not supported (use lora.merge=True)")
        state = {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights}  # every rank drains
        if self.is_leader:
            await self._server_handle().load_weights.remote(state, kwargs.get("global_steps"))
        self.syncs += 1
