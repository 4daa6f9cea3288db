"""Phase control for a batch of sequences (spec §1 "Phase switching").

* Every row starts in the thinking phase (when soft thinking is on).
* Thinking ends at the step whose visible token completes the think-end token sequence (a
  single ``</think>`` id, or several pieces for tokenizers without one). That step and every
  later step are discrete.
* **Cold Stop**: a thinking row whose entropy stays below ``entropy_threshold`` for
  ``length_threshold`` consecutive steps has that N-th step forced to the first think-end
  piece; the remaining pieces (if any) are forced on the following steps. Forced steps are
  discrete.
* ``soft_until_eos``: no think-end (length 0); the row stays soft until it stops.

:class:`PhaseState` holds everything per row as small tensors, settings included (each row
may have its own think-end sequence and Cold Stop thresholds), so rows can leave the batch
(:meth:`PhaseState.select`), join it (:meth:`PhaseState.cat`) or live in a slot table
(:meth:`PhaseState.scatter_`). Its two steps are pure tensor functions (no host sync):

    forced_tokens(entropy)  ->  (state', forced [B], -1 where nothing is forced)
    update(tokens)          ->  (state', ended [B])

Think-end sequences are stored right-aligned in ``think_end [B, m]`` (left padding ``-1``), and
``window [B, m]`` holds the last ``m`` visible tokens, so a row of length ``L`` compares the
last ``L`` columns. :class:`PhaseTracker` is the in-place view the step loop uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

PAD = -1  # window entries not seen yet and the left padding of think_end


@dataclass
class PhaseState:
    """Per-row phase state and phase settings (all leading dim ``B``)."""

    thinking: Tensor  # bool [B]
    window: Tensor  # int64 [B, m]: last m visible tokens
    low_entropy_run: Tensor  # int64 [B]
    forced_piece: Tensor  # int64 [B]: index of the think-end piece forced next (-1: none)
    cold_stopped: Tensor  # bool [B]
    think_end: Tensor  # int64 [B, m]: right-aligned think-end ids, PAD on the left
    think_end_len: Tensor  # int64 [B]: 0 = no think-end (soft until EOS)
    entropy_threshold: Tensor  # float64 [B]: 0 = Cold Stop off
    length_threshold: Tensor  # int64 [B]

    @classmethod
    def new(
        cls,
        batch: int,
        think_end_ids: Sequence[int] | Sequence[Sequence[int]],
        *,
        soft_thinking: bool | Sequence[bool],
        entropy_threshold: float | Sequence[float] = 0.0,
        length_threshold: int | Sequence[int] = 256,
        device: torch.device | str = "cpu",
    ) -> PhaseState:
        """Fresh rows. ``think_end_ids``: one id sequence for all rows, or one per row."""
        per_row = len(think_end_ids) > 0 and not isinstance(think_end_ids[0], int)
        seqs = [list(s) for s in think_end_ids] if per_row else [list(think_end_ids)] * batch  # type: ignore[arg-type]
        if len(seqs) != batch:
            raise ValueError(f"think_end_ids has {len(seqs)} rows, the batch has {batch}")
        m = max([len(s) for s in seqs] + [1])
        te = torch.full((batch, m), PAD, dtype=torch.int64)
        for r, s in enumerate(seqs):
            if s:
                te[r, m - len(s):] = torch.tensor(s, dtype=torch.int64)

        def vec(x: object, dtype: torch.dtype) -> Tensor:
            t = torch.as_tensor(x, dtype=dtype, device=device)
            return t.expand(batch).clone() if t.dim() == 0 else t

        return cls(
            thinking=vec(soft_thinking, torch.bool),
            window=torch.full((batch, m), PAD, dtype=torch.int64, device=device),
            low_entropy_run=torch.zeros(batch, dtype=torch.int64, device=device),
            forced_piece=torch.full((batch,), -1, dtype=torch.int64, device=device),
            cold_stopped=torch.zeros(batch, dtype=torch.bool, device=device),
            think_end=te.to(device),
            think_end_len=torch.tensor([len(s) for s in seqs], dtype=torch.int64, device=device),
            entropy_threshold=vec(entropy_threshold, torch.float64),
            length_threshold=vec(length_threshold, torch.int64),
        )

    # -- rows joining and leaving ------------------------------------------------------------
    @property
    def width(self) -> int:
        return int(self.window.shape[1])

    def padded(self, m: int) -> PhaseState:
        """The same rows with ``m >= width`` window/think-end columns (left-padded with PAD)."""
        if m < self.width:
            raise ValueError(f"cannot narrow the think-end width from {self.width} to {m}")
        pad = (m - self.width, 0)
        return replace(self, window=F.pad(self.window, pad, value=PAD), think_end=F.pad(self.think_end, pad, value=PAD))

    def select(self, rows: Tensor) -> PhaseState:
        """Rows ``rows`` (an index or bool mask), in that order."""
        return PhaseState(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @classmethod
    def cat(cls, states: Sequence[PhaseState]) -> PhaseState:
        """Concatenate batches (rows joining); widths are padded to the largest."""
        m = max(s.width for s in states)
        states = [s.padded(m) for s in states]
        return cls(**{f.name: torch.cat([getattr(s, f.name) for s in states]) for f in fields(cls)})

    def scatter_(self, rows: Tensor, other: PhaseState) -> None:
        """Write ``other``'s rows into rows ``rows`` of this state in place (a slot table)."""
        other = other.padded(self.width)
        for f in fields(self):
            getattr(self, f.name).index_copy_(0, rows, getattr(other, f.name))

    # -- the two steps -----------------------------------------------------------------------
    def _piece(self, index: Tensor) -> Tensor:
        """Think-end piece ``index`` of each row (right-aligned storage)."""
        col = (self.width - self.think_end_len + index.clamp_min(0)).clamp(0, self.width - 1)
        return self.think_end.gather(1, col.unsqueeze(-1)).squeeze(-1)

    def forced_tokens(self, entropy: Tensor) -> tuple[PhaseState, Tensor]:
        """Update the Cold Stop counters with this step's ``entropy [B]``; return the forced tokens.

        Where Cold Stop is on (``threshold > 0`` and a think-end exists):
        ``run = run + 1`` if ``H < threshold`` (a thinking row, nothing forced yet) else ``0``; a
        row whose run reaches ``length_threshold`` starts emitting the think-end pieces now.
        """
        has_end = self.think_end_len > 0
        on = (self.entropy_threshold > 0) & has_end
        low = on & self.thinking & (self.forced_piece < 0) & (entropy < self.entropy_threshold.to(entropy.dtype))
        run = torch.where(on, torch.where(low, self.low_entropy_run + 1, torch.zeros_like(self.low_entropy_run)),
                          self.low_entropy_run)
        start = low & (run >= self.length_threshold)
        forced_piece = torch.where(start, torch.zeros_like(self.forced_piece), self.forced_piece)
        state = replace(self, low_entropy_run=run, forced_piece=forced_piece, cold_stopped=self.cold_stopped | start)
        forced = torch.where((forced_piece >= 0) & has_end, state._piece(forced_piece), torch.full_like(forced_piece, -1))
        return state, forced

    def update(self, tokens: Tensor) -> tuple[PhaseState, Tensor]:
        """Record this step's visible ``tokens [B]``; return the rows whose thinking ended here.

        A row's thinking ends when its last ``L`` visible tokens equal its think-end sequence. A
        row whose thinking ended stops forcing, even if pieces were left (a sequence with a
        border can be completed early by a natural piece before the forced ones).
        """
        window = torch.cat([self.window[:, 1:], tokens.view(-1, 1).to(torch.int64)], dim=1)
        col = torch.arange(self.width, device=window.device).unsqueeze(0)
        compared = col >= (self.width - self.think_end_len).unsqueeze(-1)
        match = ((window == self.think_end) | ~compared).all(-1) & (self.think_end_len > 0)
        ended = self.thinking & match
        nxt = self.forced_piece + 1
        advancing = (self.forced_piece >= 0) & ~ended & (nxt < self.think_end_len)
        forced_piece = torch.where(advancing, nxt, torch.full_like(nxt, -1))
        return replace(self, window=window, forced_piece=forced_piece, thinking=self.thinking & ~ended), ended


_STATE_FIELDS = frozenset(f.name for f in fields(PhaseState))


class PhaseTracker:
    """An in-place :class:`PhaseState` for a step loop (``thinking``, ``cold_stopped``, ``select``, ...)."""

    def __init__(
        self,
        batch: int,
        think_end_ids: Sequence[int] | Sequence[Sequence[int]],
        *,
        soft_thinking: bool | Sequence[bool],
        entropy_threshold: float | Sequence[float] = 0.0,
        length_threshold: int | Sequence[int] = 256,
        device: torch.device | str = "cpu",
    ) -> None:
        self.state = PhaseState.new(
            batch, think_end_ids, soft_thinking=soft_thinking, entropy_threshold=entropy_threshold,
            length_threshold=length_threshold, device=device,
        )

    @classmethod
    def from_state(cls, state: PhaseState) -> PhaseTracker:
        tracker = cls.__new__(cls)
        tracker.state = state
        return tracker

    def __getattr__(self, name: str) -> Tensor:
        """The state's fields read through: ``thinking``, ``cold_stopped``, ``window``, ..."""
        if name in _STATE_FIELDS:
            return getattr(self.state, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def has_think_end(self) -> bool:
        return bool((self.state.think_end_len > 0).any())

    def select(self, rows: Tensor) -> None:
        """Keep only ``rows`` (finished rows leave the batch)."""
        self.state = self.state.select(rows)

    def join(self, other: PhaseTracker | PhaseState) -> None:
        """Append ``other``'s rows (new requests join the batch)."""
        self.state = PhaseState.cat([self.state, other.state if isinstance(other, PhaseTracker) else other])

    def forced_tokens(self, entropy: Tensor) -> Tensor:
        """The token each row is forced to emit at this step (``-1`` where none); see :meth:`PhaseState.forced_tokens`."""
        self.state, forced = self.state.forced_tokens(entropy)
        return forced

    def update(self, tokens: Tensor) -> Tensor:
        """Record the visible ``tokens [B]``; return the rows whose thinking ended (:meth:`PhaseState.update`)."""
        self.state, ended = self.state.update(tokens)
        return ended
