"""``HFSoftReplica``: a verl ``RolloutReplica`` with one :class:`HFSoftServer` actor.

The server is placed on the node of the replica's trainer worker (node affinity) and named
``hf_soft_server_<replica_rank>``, so that worker's :class:`HFSoftServerAdapter` can push weights to
it. ``hf_soft`` decodes on one process: a replica spans one worker (TP = DP = PP = 1).
"""

from __future__ import annotations

from typing import Any

import ray
from verl.workers.rollout.replica import RolloutReplica

from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.hf_rollout import server_actor_name
from softgrpo.verl_plugin.hf_rollout.server import HFSoftServer


class HFSoftReplica(RolloutReplica):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.world_size != 1:
            raise SoftGRPOError(
                f"rollout.name=hf_soft decodes on one process: tensor_model_parallel_size * data_parallel_size * "
                f"pipeline_model_parallel_size = {self.world_size}, allowed 1"
            )
        if self.is_reward_model or self.is_teacher_model:
            raise SoftGRPOError("rollout.name=hf_soft serves the policy only (no reward or teacher model)")
        self.server_class = ray.remote(HFSoftServer)

    async def launch_servers(self) -> None:
        if len(self.workers) != 1:
            raise SoftGRPOError(f"hf_soft replica {self.replica_rank} got {len(self.workers)} workers, expected 1")
        node_id = await self.workers[0].__ray_call__.remote(lambda worker: ray.get_runtime_context().get_node_id())
        name = server_actor_name(self.replica_rank)
        server = self.server_class.options(
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            name=name,
            num_cpus=0,
            max_concurrency=self.max_concurrency,
        ).remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        await server.get_stats.remote()  # wait until the model is loaded
        self.servers = [server]
        self._server_handle = server
        self._server_address = name
