"""Phase control for a batch of sequences (spec §1 "Phase switching").

* Every row starts in the thinking phase (when soft thinking is on).
* Thinking ends at the step whose visible token completes the think-end token sequence (a
  single ``</think>`` id, or several pieces for tokenizers without one). That step and every
  later step are discrete.
* **Cold Stop**: a thinking row whose entropy stays below ``entropy_threshold`` for
  ``length_threshold`` consecutive steps has that N-th step forced to the first think-end
  piece; the remaining pieces (if any) are forced on the following steps. Forced steps are
  discrete.
* ``soft_until_eos``: no think-end; the row stays soft until it stops.

The tracker holds only small ``[B]`` / ``[B, m]`` integer tensors, so rows can be dropped from
the batch with :meth:`PhaseTracker.select`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class PhaseTracker:
    """Per-row phase state: ``thinking [B]``, the last ``m`` visible tokens, Cold Stop counters."""

    def __init__(
        self,
        batch: int,
        think_end_ids: Sequence[int],
        *,
        soft_thinking: bool,
        entropy_threshold: float = 0.0,
        length_threshold: int = 256,
        device: torch.device | str = "cpu",
    ) -> None:
        self.think_end = torch.as_tensor(list(think_end_ids), dtype=torch.int64, device=device)
        self.entropy_threshold = float(entropy_threshold)
        self.length_threshold = int(length_threshold)
        m = max(len(think_end_ids), 1)
        self.thinking = torch.full((batch,), bool(soft_thinking), dtype=torch.bool, device=device)
        self.window = torch.full((batch, m), -1, dtype=torch.int64, device=device)
        self.low_entropy_run = torch.zeros(batch, dtype=torch.int64, device=device)
        self.forced_piece = torch.full((batch,), -1, dtype=torch.int64, device=device)  # -1: nothing forced
        self.cold_stopped = torch.zeros(batch, dtype=torch.bool, device=device)

    @property
    def has_think_end(self) -> bool:
        return self.think_end.numel() > 0

    def select(self, rows: Tensor) -> None:
        """Keep only ``rows`` (finished rows leave the batch)."""
        for name in ("thinking", "window", "low_entropy_run", "forced_piece", "cold_stopped"):
            setattr(self, name, getattr(self, name)[rows])

    def forced_tokens(self, entropy: Tensor) -> Tensor:
        """The token each row is forced to emit at this step (``-1`` where none).

        Updates the Cold Stop counters with this step's ``entropy [B]`` first:
        ``run = run + 1`` if ``H < threshold`` else ``0``; a thinking row whose run reaches
        ``length_threshold`` starts emitting the think-end pieces now.
        """
        if self.entropy_threshold > 0 and self.has_think_end:
            low = self.thinking & (self.forced_piece < 0) & (entropy < self.entropy_threshold)
            self.low_entropy_run = torch.where(low, self.low_entropy_run + 1, torch.zeros_like(self.low_entropy_run))
            start = low & (self.low_entropy_run >= self.length_threshold)
            self.forced_piece = torch.where(start, torch.zeros_like(self.forced_piece), self.forced_piece)
            self.cold_stopped |= start
        if not self.has_think_end:
            return torch.full_like(self.forced_piece, -1)
        piece = self.think_end[self.forced_piece.clamp_min(0)]
        return torch.where(self.forced_piece >= 0, piece, torch.full_like(piece, -1))

    def update(self, tokens: Tensor) -> Tensor:
        """Record this step's visible ``tokens [B]``; return the rows whose thinking ended here.

        A row's thinking ends when its last ``m`` visible tokens equal the think-end sequence.
        """
        if not self.has_think_end:
            return torch.zeros_like(self.thinking)
        self.window = torch.cat([self.window[:, 1:], tokens.view(-1, 1).to(torch.int64)], dim=1)
        ended = self.thinking & (self.window == self.think_end.unsqueeze(0)).all(-1)
        # a row whose thinking ended here stops forcing, even if pieces were left (a think-end
        # sequence with a border can be completed early by a natural piece before the forced ones)
        advancing = (self.forced_piece >= 0) & ~ended
        nxt = self.forced_piece + 1
        self.forced_piece = torch.where(advancing & (nxt < self.think_end.numel()), nxt, torch.full_like(nxt, -1))
        self.thinking = self.thinking & ~ended
        return ended
