"""``softgrpo_sync``: verl's synchronous PPO trainer plus SofT-GRPO's estimator options and metrics.

* the estimator options (``soft_thinking`` section -> ``LogProbOptions``) travel to the engine in
  ``batch.extra_info`` for old-log-prob, reference and update;
* after ``_compute_old_log_prob`` it logs the log-space replay parity of
  :mod:`softgrpo.verl_plugin.metrics` from TransferQueue.

Loss and KL are verl's (vanilla PPO-clip, ``low_var_kl``). Sync mode only: the async trainers'
``FullyAsyncLLMServerClient`` drops the trace from ``extra_fields``.
"""

from __future__ import annotations

import sys

import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from softgrpo.verl_plugin.checks import check_config, engine_vendor_problem
from softgrpo.verl_plugin.metrics import replay_parity_metrics
from softgrpo.verl_plugin.registration import check_registries
from softgrpo.verl_plugin.settings import LOGPROB_OPTIONS_KEY, logprob_options


class SoftGRPOTrainerSync(PPOTrainerSync):
    def __init__(self, config):
        check_registries()
        self.soft = check_config(config)
        problem = engine_vendor_problem(self.soft)
        if problem:
            print(f"WARNING: softgrpo_sync: {problem}", file=sys.stderr, flush=True)
        self.soft_estimator_options = logprob_options(self.soft)
        super().__init__(config)

    def _add_soft_options(self, batch):
        batch.extra_info[LOGPROB_OPTIONS_KEY] = self.soft_estimator_options
        return batch

    def _compute_old_log_prob(self, batch, metrics):
        batch = super()._compute_old_log_prob(self._add_soft_options(batch), metrics)
        fields = ["old_log_probs", "rollout_log_probs", "response_mask", "soft_on"]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        metrics.update(replay_parity_metrics(data["old_log_probs"], data["rollout_log_probs"],
                                             data["response_mask"], data["soft_on"]))
        return batch

    def _compute_ref_log_prob(self, batch, metrics):
        return super()._compute_ref_log_prob(self._add_soft_options(batch), metrics)

    def _update_actor(self, batch, metrics):
        return super()._update_actor(self._add_soft_options(batch), metrics)
