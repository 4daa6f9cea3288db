"""The trace of a soft request from the rows the worker returned (:meth:`SoftState.pop`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.recorder import RecordedRow
from soft_thinking.core.trace import SoftTrace
from soft_thinking.engines.base import EngineError
from soft_thinking.engines.sglang.codec import FLAG_ANSWER, FLAG_FORCED, FLAG_SOFT


def trace_from_pulled(rows: dict[str, Any], output_ids: Sequence[int], cfg: SoftThinkingConfig) -> RecordedRow:
    """A :class:`RecordedRow` whose trace is aligned with ``output_ids`` (checked: ``ids[:, 0] == tokens``)."""
    n = len(output_ids)
    if rows["recorded"] < n or len(rows["flags"]) != n:
        raise EngineError(f"soft trace has {rows['recorded']} recorded steps for {n} output tokens")
    tokens = torch.tensor(list(output_ids), dtype=torch.int64)
    ids = torch.tensor(rows["ids"], dtype=torch.int32).reshape(n, -1)
    if n and not torch.equal(ids[:, 0].long(), tokens):
        bad = int((ids[:, 0].long() != tokens).nonzero()[0, 0])
        raise EngineError(f"soft trace misaligned with the output at step {bad}: ids[0]={int(ids[bad, 0])}, "
                          f"token={int(tokens[bad])}")
    flags = torch.tensor(rows["flags"], dtype=torch.int64)
    answer = (flags & FLAG_ANSWER) != 0
    answer_start = int(answer.to(torch.uint8).argmax()) if bool(answer.any()) else n
    trace = SoftTrace(
        tokens=tokens, ids=ids, q=torch.tensor(rows["q"], dtype=torch.float32).reshape(n, -1), soft=(flags & FLAG_SOFT) != 0,
        logprobs=torch.tensor(rows["logprob"], dtype=torch.float32), noise=cfg.effective_noise,
        tau_g=float(cfg.gumbel_softmax_temperature), temperature=float(cfg.temperature),
        answer_temperature=float(cfg.answer_temperature if not cfg.compat_stale_phase_mask else cfg.temperature),
        answer_start=answer_start, n_kept=torch.tensor(rows["n_kept"], dtype=torch.int16),
    ).validate()
    ended = answer_start if answer_start < n else -1
    return RecordedRow(trace, ended, bool(((flags & FLAG_FORCED) != 0).any()))
