"""The per-token soft fields a rollout adds to verl's training batch (the contract of spec §2 in verl's layout).

verl's V1 pipeline carries every tensor of ``AgentLoopOutput.as_dict()`` through TransferQueue to the
engine micro-batch as a jagged tensor aligned with ``input_ids`` (prompt + response, length ``L``).
One soft trace of ``T`` response steps becomes, with ``P`` prompt tokens (``L = P + T``)::

    soft_ids   int32   [L, K]   candidate ids; prompt rows 0; discrete rows [token, 0, ...]
    soft_q     float32 [L, K]   stored q (before / tau_g); prompt and discrete rows 0
    soft_on    int8    [L]      1 where the *input* at that position was a mixture
    soft_temp  float32 [L]      the rollout temperature of the step; prompt rows 0
    soft_kept  int16   [L]      candidates left after filtering (0 = not recorded, prompt rows 0)
    soft_tau_g float32 []       Gumbel-softmax temperature of the sequence
    soft_noise int8    []       noise kind, an index into ``NOISE_KINDS``

Row ``P + t`` holds step ``t``: the step's visible token is ``input_ids[P + t]`` and its mixture is
the input fed at that position. The log-prob of step ``t`` sits at row ``P + t - 1`` (verl's labels
are ``roll(input_ids, -1)``), so the engine reads these fields rolled by -1 as well.

TransferQueue rejects a dtype change of a field between batches: the dtypes above and ``K`` (the
configured ``max_topk``) never change, discrete arm included.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from soft_thinking.core.config import NOISE_KINDS
from soft_thinking.core.trace import SoftTrace
from soft_thinking.errors import SoftGRPOError

#: extra_fields key of the serialized trace (``SoftTrace.to_bytes``) from the server to the agent loop.
TRACE_KEY = "softgrpo_trace"

#: name -> dtype of every field this module emits, in a fixed order.
FIELD_DTYPES: dict[str, torch.dtype] = {
    "soft_ids": torch.int32,
    "soft_q": torch.float32,
    "soft_on": torch.int8,
    "soft_temp": torch.float32,
    "soft_kept": torch.int16,
    "soft_tau_g": torch.float32,
    "soft_noise": torch.int8,
}
PER_TOKEN_FIELDS: tuple[str, ...] = ("soft_ids", "soft_q", "soft_on", "soft_temp", "soft_kept")
PER_SEQUENCE_FIELDS: tuple[str, ...] = ("soft_tau_g", "soft_noise")


class TraceMismatchError(SoftGRPOError):
    """A rollout's trace does not describe the response verl recorded."""


def noise_code(noise: str) -> int:
    """``noise`` as its index in ``NOISE_KINDS`` (the int8 ``soft_noise`` field)."""
    if noise not in NOISE_KINDS:
        raise SoftGRPOError(f"soft_noise: unknown noise kind {noise!r}; allowed: {NOISE_KINDS}")
    return NOISE_KINDS.index(noise)


def noise_name(code: int) -> str:
    if not 0 <= int(code) < len(NOISE_KINDS):
        raise SoftGRPOError(f"soft_noise: code {int(code)} is not an index into {NOISE_KINDS}")
    return NOISE_KINDS[int(code)]


def check_trace_matches(trace: SoftTrace, response_ids: list[int]) -> None:
    """The trace must be the response, step for step (verl may merge or cut tokens; we never guess)."""
    if len(trace) != len(response_ids):
        raise TraceMismatchError(
            f"soft trace has {len(trace)} steps but the response has {len(response_ids)} tokens "
            "(rollout.response_length must cap the server's generation; nothing may edit the response)"
        )
    if trace.tokens.tolist() != list(response_ids):
        first = next(i for i, (a, b) in enumerate(zip(trace.tokens.tolist(), response_ids)) if a != b)
        raise TraceMismatchError(f"soft trace token {first} differs from response token {first}")


def trace_fields(trace: SoftTrace, prompt_len: int, k: int) -> dict[str, Tensor]:
    """The fields of one sequence (module doc), over ``L = prompt_len + len(trace)`` rows, ``K = k``."""
    if trace.K > k:
        raise SoftGRPOError(f"soft trace has K={trace.K} candidates per step, more than max_topk={k}")
    p, t = int(prompt_len), len(trace)
    length = p + t
    ids = torch.zeros(length, k, dtype=torch.int32)
    q = torch.zeros(length, k, dtype=torch.float32)
    on = torch.zeros(length, dtype=torch.int8)
    temp = torch.zeros(length, dtype=torch.float32)
    kept = torch.zeros(length, dtype=torch.int16)
    ids[p:, : trace.K] = trace.ids.to(torch.int32)
    q[p:, : trace.K] = trace.q.to(torch.float32)
    on[p:] = trace.soft.to(torch.int8)
    temp[p:] = trace.step_temperatures().to(torch.float32)
    if trace.n_kept is not None:
        kept[p:] = trace.n_kept.to(torch.int16)
    return {
        "soft_ids": ids,
        "soft_q": q,
        "soft_on": on,
        "soft_temp": temp,
        "soft_kept": kept,
        "soft_tau_g": torch.tensor(float(trace.tau_g), dtype=torch.float32),
        "soft_noise": torch.tensor(noise_code(trace.noise), dtype=torch.int8),
    }


def attach_soft_trace(out: Any, trace: SoftTrace) -> None:
    """Put a soft request's trace on a server's ``TokenOutput``; its log-probs become the trace's step densities
    (soft steps are scored by their Gumbel density, not a token log-prob)."""
    out.extra_fields[TRACE_KEY] = trace.to_bytes()
    if out.log_probs is not None:
        out.log_probs = trace.logprobs.tolist()
