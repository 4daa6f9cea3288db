"""The soft-replay engine: verl's FSDP engine that scores SofT-GRPO rollouts (spec §3).

``SoftFSDPEngineWithLMHead`` subclasses ``verl.workers.engine.fsdp.transformer_impl.FSDPEngineWithLMHead``
and, for a micro-batch that carries the soft fields (:mod:`softgrpo.verl_plugin.fields`):

1. ``prepare_model_inputs`` (super first) stashes the packed fields (:func:`~softgrpo.verl_plugin.packed.pack_soft`);
2. a forward hook on ``get_input_embeddings()``, registered once with ``prepend=True``, overwrites the
   mixture rows with ``sum_i softmax(q/tau_g)_i E[c_i]`` under ``no_grad``. It runs inside the
   embedding's forward, where FSDP2 has unsharded the weight, and before FSDP2's own post-forward
   reshard hook (verl wraps an untied ``embed_tokens`` as its own FSDP2 unit); it never gathers;
3. ``prepare_model_outputs`` (super first) replaces ``log_probs`` at rows whose label is a soft step
   with the core's ``mixed_logprobs`` on the raw logits at the step's temperature.

Without soft fields it is its parent. One engine class serves old-log-prob, reference and update, so
the KL compares soft densities too. Supported layout only: ``use_remove_padding``, no fused kernels,
Ulysses SP 1, no ``pad_to_length`` (each checked, with an ``error:`` naming the key).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.tensor import DTensor
from verl.utils import tensordict_utils as tu
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.packed import PackedSoft, has_soft_fields, pack_soft, replay_inputs, replay_logprobs
from softgrpo.verl_plugin.settings import LOGPROB_OPTIONS_KEY, logprob_options_from_dict


class SoftEngineError(SoftGRPOError):
    """The engine is configured in a way the soft replay does not support."""


def _check_layout(engine: Any, micro_batch: Any, output_args: dict[str, Any]) -> None:
    if not tu.get_non_tensor_data(micro_batch, "use_remove_padding", default=True):
        raise SoftEngineError("actor_rollout_ref.model.use_remove_padding=False: allowed True (soft replay is packed)")
    if tu.get_non_tensor_data(micro_batch, "use_fused_kernels", default=False):
        raise SoftEngineError("actor_rollout_ref.model.use_fused_kernels=True: allowed False (soft log-probs need logits)")
    if getattr(engine, "use_ulysses_sp", False):
        raise SoftEngineError("ulysses_sequence_parallel_size > 1: allowed 1")
    if getattr(engine, "pad_to_length", False) or output_args.get("pad_size", 0):
        raise SoftEngineError("fsdp_config.pad_to_length=True: allowed False")


class SoftReplayMixin:
    """The three additions of the module doc, mixed in front of an ``FSDPEngineWithLMHead``."""

    _soft_packed: PackedSoft | None = None
    _soft_hook_handle: Any = None

    # -- inputs ---------------------------------------------------------------------------------
    def prepare_model_inputs(self, micro_batch):
        self._soft_packed = None
        model_inputs, output_args = super().prepare_model_inputs(micro_batch)
        if has_soft_fields(micro_batch):
            _check_layout(self, micro_batch, output_args)
            self._ensure_soft_hook()
            self._soft_packed = pack_soft(micro_batch)
        return model_inputs, output_args

    def _ensure_soft_hook(self) -> None:
        if self._soft_hook_handle is None:
            embedding = self.module.get_input_embeddings()
            self._soft_hook_handle = embedding.register_forward_hook(self._soft_embedding_hook, prepend=True)

    def _soft_embedding_hook(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        packed = self._soft_packed
        if packed is None or not bool(packed.on.any()):
            return None
        weight = module.weight
        if isinstance(weight, DTensor):
            raise SoftEngineError("the embedding weight is still sharded inside its forward (hook order broken)")
        return replay_inputs(output, weight, packed)

    # -- outputs --------------------------------------------------------------------------------
    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        model_output = super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        packed, self._soft_packed = self._soft_packed, None
        if packed is None or model_output.get("log_probs") is None:
            return model_output
        log_probs = model_output["log_probs"]
        opts_dict = tu.get_non_tensor_data(micro_batch, LOGPROB_OPTIONS_KEY, default=None)
        opts = logprob_options_from_dict(opts_dict) if opts_dict is not None else None
        values = replay_logprobs(
            log_probs.values(),
            output.logits.squeeze(0),
            output_args["input_ids_rmpad_rolled"],
            packed,
            output_args["temperature_rmpad"],
            opts,
        )
        model_output["log_probs"] = torch.nested.nested_tensor_from_jagged(values, log_probs.offsets())
        return model_output


class SoftFSDPEngineWithLMHead(SoftReplayMixin, FSDPEngineWithLMHead):
    """verl's FSDP engine with the soft replay (cuda; selected by ``VERL_ENGINE_VENDOR=softgrpo``)."""
