"""The soft fields of one engine micro-batch, packed like verl's ``input_ids_rmpad`` (spec §3 on packed rows).

verl's FSDP engine runs a micro-batch as one packed sequence of ``nnz`` tokens
(``input_ids.values()``); :func:`pack_soft` lays the soft fields out the same way, and two functions
apply the replay:

* :func:`replay_inputs` -- at rows whose input was a mixture, ``e = sum_i w_i E[c_i]`` with
  ``w = weights(q, noise, tau_g)`` (the core's ``replay_embeddings``, no gradient through ``e``);
* :func:`replay_logprobs` -- at rows whose *label* (the next token, ``roll(., -1)``) is a soft step,
  or a step sampled at another temperature than verl's, the core's ``mixed_logprobs`` on the raw
  logits at the step's temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.logprob import LogProbOptions, mixed_logprobs
from soft_thinking.core.mixture import replay_embeddings
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.fields import PER_TOKEN_FIELDS, noise_name


class PackedSoftError(SoftGRPOError):
    """The soft fields do not line up with the micro-batch."""


@dataclass
class PackedSoft:
    """Soft fields over the ``nnz`` packed rows of a micro-batch."""

    ids: Tensor  # int64 [nnz, K]
    q: Tensor  # float32 [nnz, K]
    on: Tensor  # bool [nnz]
    temp: Tensor  # float32 [nnz]
    kept: Tensor  # int64 [nnz]
    tau: Tensor  # float32 [nnz]
    noise: Tensor  # int64 [nnz] (NOISE_KINDS index)

    @property
    def nnz(self) -> int:
        return int(self.on.shape[0])


def _packed_values(t: Tensor, lengths: list[int]) -> Tensor:
    """``t``'s rows in packed order: ``values()`` of a jagged tensor, else the unpadded rows of ``[B, L, ...]``."""
    if t.is_nested:
        return t.values()
    if t.shape[0] != len(lengths):
        raise PackedSoftError(f"a soft field has batch size {t.shape[0]}, the micro-batch {len(lengths)}")
    return torch.cat([t[i, :n] for i, n in enumerate(lengths)], dim=0)


def _per_sequence(t: Tensor, lengths: list[int]) -> Tensor:
    v = t.values() if t.is_nested else t
    v = v.reshape(len(lengths), -1)[:, 0]
    return v.repeat_interleave(torch.as_tensor(lengths, device=v.device))


def has_soft_fields(micro_batch) -> bool:
    return "soft_on" in micro_batch.keys()


def pack_soft(micro_batch) -> PackedSoft:
    """The micro-batch's soft fields aligned row for row with ``input_ids.values()``."""
    input_ids = micro_batch["input_ids"]
    if not input_ids.is_nested:
        raise PackedSoftError("input_ids must be a jagged tensor (verl's NO_PADDING layout)")
    lengths = input_ids.offsets().diff().tolist()
    nnz = int(input_ids.values().shape[0])
    missing = [f for f in (*PER_TOKEN_FIELDS, "soft_tau_g", "soft_noise") if f not in micro_batch.keys()]
    if missing:
        raise PackedSoftError(f"micro-batch has soft_on but lacks {missing}")
    vals = {f: _packed_values(micro_batch[f], lengths) for f in PER_TOKEN_FIELDS}
    for name, v in vals.items():
        if v.shape[0] != nnz:
            raise PackedSoftError(f"{name} has {v.shape[0]} packed rows, input_ids {nnz}")
    return PackedSoft(
        ids=vals["soft_ids"].long(),
        q=vals["soft_q"].float(),
        on=vals["soft_on"].bool(),
        temp=vals["soft_temp"].float(),
        kept=vals["soft_kept"].long(),
        tau=_per_sequence(micro_batch["soft_tau_g"], lengths).float(),
        noise=_per_sequence(micro_batch["soft_noise"], lengths).long(),
    )


def replay_inputs(embeddings: Tensor, weight: Tensor, packed: PackedSoft) -> Tensor:
    """``embeddings [1, nnz, D]`` with mixture rows replaced (gradient kept at the other rows).

    ``weight`` is the *unsharded* embedding matrix ``E [V, D]`` (inside the embedding's forward).
    """
    if embeddings.dim() != 3 or embeddings.shape[1] != packed.nnz:
        raise PackedSoftError(
            f"embedding output {tuple(embeddings.shape)} does not hold the {packed.nnz} packed rows "
            "(sequence parallelism or static padding is on; both are unsupported)"
        )
    rows = packed.on.nonzero().squeeze(-1)
    if rows.numel() == 0:
        return embeddings
    out = embeddings.clone()
    for code in packed.noise[rows].unique().tolist():
        sel = rows[packed.noise[rows] == code]
        ones = torch.ones(sel.shape[0], dtype=torch.bool, device=sel.device)
        mixed = replay_embeddings(weight.detach(), packed.ids[sel], packed.q[sel], ones, noise_name(code), packed.tau[sel])
        out[0, sel] = mixed.to(out.dtype)
    return out


def rows_to_rescore(packed: PackedSoft, verl_temperature: Tensor) -> Tensor:
    """Row indices whose label is a soft step, or a step sampled at another temperature than verl's."""
    on_next = torch.roll(packed.on, -1)
    temp_next = torch.roll(packed.temp, -1)
    other_temp = (temp_next > 0) & ((temp_next - verl_temperature.float()).abs() > 1e-6)
    return (on_next | other_temp).nonzero().squeeze(-1)


def replay_logprobs(log_probs: Tensor, logits: Tensor, labels: Tensor, packed: PackedSoft,
                    verl_temperature: Tensor, opts: LogProbOptions | None) -> Tensor:
    """``log_probs [nnz]`` with the rows of :func:`rows_to_rescore` recomputed by ``mixed_logprobs``.

    Args:
        log_probs: verl's per-row log-probs (``log softmax(z / T)[label]``).
        logits: raw logits ``[nnz, V]`` (before verl's temperature scaling).
        labels: ``roll(input_ids, -1)`` ``[nnz]``; verl_temperature: ``[nnz]``.
        opts: estimator options; required when a soft label is present.
    """
    rows = rows_to_rescore(packed, verl_temperature)
    if rows.numel() == 0:
        return log_probs
    ids, q = torch.roll(packed.ids, -1, 0)[rows], torch.roll(packed.q, -1, 0)[rows]
    on, temp = torch.roll(packed.on, -1)[rows], torch.roll(packed.temp, -1)[rows]
    kept, noise = torch.roll(packed.kept, -1)[rows], torch.roll(packed.noise, -1)[rows]
    if bool(on.any()) and opts is None:
        raise PackedSoftError(
            "soft steps in the batch but no estimator options: run with trainer.v1.trainer_mode=softgrpo_sync"
        )
    opts = opts if opts is not None else SoftThinkingConfig().logprob_options()
    if opts.degenerate_as_discrete and bool((on & (kept == 0)).any()):
        raise PackedSoftError("degenerate_as_discrete needs soft_kept, and the rollout did not record it")
    out = log_probs.clone()
    for code in noise.unique().tolist():
        m = noise == code
        new = mixed_logprobs(logits[rows[m]], labels[rows[m]], ids[m], q[m], on[m], temp[m], noise_name(code), opts,
                             kept[m] if opts.degenerate_as_discrete else None)
        out[rows[m]] = new.to(out.dtype)
    return out
