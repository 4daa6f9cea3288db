"""The trace channel: one packed byte row per request and step, and its decoding into a :class:`SoftTrace`.

Row layout (little-endian, ``8K + 7`` bytes; ``K`` is the request's own ``max_topk`` once
:class:`RowBytes` trims the table-wide device rows, else the server's table width)::

    ids      int32[K]     candidates sorted by weight; discrete steps [token, 0, ...]
    q        float32[K]   the stored noise value (spec §2); discrete steps 0
    logprob  float32      the rollout log-prob of the step
    n_kept   int16        candidates that survived the filters (1 for discrete steps)
    flags    uint8        bit 0 soft, 1 answer phase, 2 truncated prefix, 3 first step after a retraction,
                         4 forced by Cold Stop

The sample hook packs all rows on the device, starts one non-blocking copy to pinned memory and
hands SGLang ``logits_output.customized_info = {"softgrpo": RowBytes(rows)}``; SGLang indexes
``v[i]`` only after its copy-done event (overlap) or a host sync (no overlap), so the bytes are
ready. SGLang appends one row per output token and returns them as ``meta_info["softgrpo"]``,
aligned with ``output_ids``; streaming chunks are concatenated by the client.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from soft_thinking.core.batch import BatchStep
from soft_thinking.core.trace import SoftTrace
from soft_thinking.engines.sglang.settings import SoftRequest

TRACE_KEY = "softgrpo"
FLAG_SOFT, FLAG_ANSWER, FLAG_TRUNCATED, FLAG_RETRACTED, FLAG_FORCED = 1, 2, 4, 8, 16


class TraceError(ValueError):
    """A trace that does not match its request (missing key, wrong length, misaligned tokens)."""


def row_bytes(k: int) -> int:
    return 8 * k + 7


def row_dtype(k: int) -> np.dtype:
    return np.dtype([("ids", "<i4", (k,)), ("q", "<f4", (k,)), ("logprob", "<f4"), ("n_kept", "<i2"), ("flags", "u1")])


def _bytes_of(x: Tensor) -> Tensor:
    """``[B, ...]`` -> ``[B, nbytes]`` uint8 (a view of the little-endian storage)."""
    return x.contiguous().view(torch.uint8).reshape(x.shape[0], -1)


def pack_rows(step: BatchStep, retracted: Tensor | None = None) -> Tensor:
    """``[B, 8K + 7]`` uint8 on the step's device (no host sync)."""
    flags = (step.soft.to(torch.uint8) * FLAG_SOFT + step.answer.to(torch.uint8) * FLAG_ANSWER
             + step.truncated.to(torch.uint8) * FLAG_TRUNCATED + step.forced.to(torch.uint8) * FLAG_FORCED)
    if retracted is not None:
        flags = flags + retracted.to(torch.uint8) * FLAG_RETRACTED
    parts = [step.ids.to(torch.int32), step.q.to(torch.float32), step.logprobs.to(torch.float32).unsqueeze(-1),
             step.n_kept.to(torch.int16).unsqueeze(-1), flags.unsqueeze(-1)]
    return torch.cat([_bytes_of(p) for p in parts], dim=1)


class RowBytes:
    """``customized_info`` value: ``rows[i]`` is the ``bytes`` of row ``i`` of a host copy of the packed rows.

    ``widths`` (host ints, one per row, each ``<= K``): row ``i`` is cut to its request's own K
    (``ids[:k]``, ``q[:k]``, the 7 tail bytes: ``8k + 7`` bytes instead of the table's ``8K + 7``); the
    columns past a request's K are padding (id 0, q 0), so nothing is lost.
    """

    def __init__(self, packed: Tensor, widths: Sequence[int] | None = None) -> None:
        k = (int(packed.shape[1]) - 7) // 8
        if widths is not None and (len(widths) != packed.shape[0] or any(not 1 <= w <= k for w in widths)):
            raise ValueError(f"RowBytes widths must be one int in [1, {k}] per row ({packed.shape[0]} rows), "
                             f"got {list(widths)}")
        if packed.device.type == "cuda":
            host = torch.empty(packed.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(packed, non_blocking=True)  # ordered before SGLang's copy-done event on this stream
        else:
            host = packed
        self.host, self.k, self.widths = host, k, None if widths is None else list(widths)

    def __len__(self) -> int:
        return int(self.host.shape[0])

    def __getitem__(self, i: int) -> bytes:
        row = self.host[i].numpy()
        if self.widths is None or self.widths[i] == self.k:
            return row.tobytes()
        k, w = self.k, self.widths[i]
        return row[: 4 * w].tobytes() + row[4 * k: 4 * k + 4 * w].tobytes() + row[8 * k:].tobytes()


def decode_rows(rows: Sequence[bytes]) -> np.ndarray:
    """A structured array of the rows (all of one width)."""
    if not rows:
        return np.zeros(0, dtype=row_dtype(1))
    size = len(rows[0])
    if (size - 7) % 8 or size < 15 or any(len(r) != size for r in rows):
        raise TraceError(f"trace rows must all be 8K + 7 bytes long, got lengths {sorted({len(r) for r in rows})}")
    return np.frombuffer(b"".join(rows), dtype=row_dtype((size - 7) // 8))


def trace_from_rows(rows: Sequence[bytes], output_ids: Sequence[int], request: SoftRequest) -> SoftTrace:
    """The :class:`SoftTrace` of one soft request from its rows (one per output token).

    Raises :class:`TraceError` when the count or the visible tokens do not match ``output_ids``.
    """
    if len(rows) != len(output_ids):
        raise TraceError(f"trace has {len(rows)} rows for {len(output_ids)} output tokens (0.5.12 non-stream "
                         "truncation? a stream chunk lost?)")
    arr = decode_rows(rows)
    cfg = request.config
    k = cfg.max_topk
    tokens = torch.tensor(list(output_ids), dtype=torch.int64)
    ids = torch.from_numpy(arr["ids"][:, :k].copy()).reshape(len(rows), k)
    if len(rows) and not torch.equal(ids[:, 0].long(), tokens):
        bad = int((ids[:, 0].long() != tokens).nonzero()[0, 0])
        raise TraceError(f"trace misaligned with output_ids at step {bad}: ids[0]={int(ids[bad, 0])}, "
                         f"token={int(tokens[bad])}")
    flags = torch.from_numpy(arr["flags"].copy()).reshape(-1)
    answer = (flags & FLAG_ANSWER) != 0
    answer_start = int(answer.to(torch.uint8).argmax()) if bool(answer.any()) else len(rows)
    return SoftTrace(
        tokens=tokens,
        ids=ids.to(torch.int32),
        q=torch.from_numpy(arr["q"][:, :k].copy()).reshape(len(rows), k),
        soft=(flags & FLAG_SOFT) != 0,
        logprobs=torch.from_numpy(arr["logprob"].copy()).reshape(-1),
        noise=cfg.effective_noise,
        tau_g=float(cfg.gumbel_softmax_temperature),
        temperature=float(cfg.temperature),
        answer_temperature=float(cfg.answer_temperature if not cfg.compat_stale_phase_mask else cfg.temperature),
        answer_start=answer_start,
        n_kept=torch.from_numpy(arr["n_kept"].copy()).reshape(-1),
    ).validate()


def flags_of(rows: Sequence[bytes]) -> np.ndarray:
    return decode_rows(rows)["flags"]


def concat_chunks(chunks: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Streaming: each chunk's ``meta_info['softgrpo']`` holds only its new rows; the trace is their concatenation."""
    return [row for chunk in chunks for row in chunk]
