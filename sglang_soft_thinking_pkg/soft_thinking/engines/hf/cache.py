"""A KV cache for the decode loop that writes into preallocated buffers instead of concatenating.

transformers' ``DynamicLayer`` appends each step with ``torch.cat`` over the whole cache: a new
``[B, H, L, D]`` tensor per layer, key and value, every step (on the quickstart's tiny model 40% of
a decode forward's time went to those copies and their allocations). :class:`PreallocatedLayer`
keeps one buffer of the final length and hands the attention the same values as views
``buffer[:, :, :L]``; the attention reads the same numbers, so the logits are bit-identical
(tests/engines/hf/test_cache.py checks it against ``DynamicCache``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """``DynamicLayer`` whose keys/values are views of a buffer with room for ``capacity`` positions.

    A write past the capacity grows the buffer (copying once), so the capacity is a hint, never a limit.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = max(1, int(capacity))
        self._kbuf: torch.Tensor | None = None
        self._vbuf: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        old = self.get_seq_length()
        new = old + key_states.shape[-2]
        if self._kbuf is None or new > self._kbuf.shape[-2] or self._kbuf.shape[0] != key_states.shape[0]:
            self._grow(key_states, value_states, old, max(new, self.capacity))
        assert self._kbuf is not None and self._vbuf is not None
        self._kbuf[:, :, old:new] = key_states
        self._vbuf[:, :, old:new] = value_states
        self.keys, self.values = self._kbuf[:, :, :new], self._vbuf[:, :, :new]
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, old: int, capacity: int) -> None:
        b, h, _, d = key_states.shape
        kbuf = key_states.new_empty(b, h, capacity, d)
        vbuf = value_states.new_empty(b, value_states.shape[1], capacity, value_states.shape[-1])
        if old:
            kbuf[:, :, :old] = self.keys
            vbuf[:, :, :old] = self.values
        self._kbuf, self._vbuf = kbuf, vbuf

    def _adopt(self) -> None:
        """After an operation of the base class replaced ``keys``/``values``: they become the buffers."""
        self._kbuf, self._vbuf = (self.keys, self.values) if self.get_seq_length() > 0 else (None, None)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0 and self._kbuf is not None and self._vbuf is not None:
            n = self.get_seq_length()
            self._kbuf, self._vbuf = self._kbuf[indices], self._vbuf[indices]  # rows kept, room kept
            self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

    def crop(self, max_length: int) -> None:
        super().crop(max_length)
        self._adopt()

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._adopt()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._adopt()


def preallocated_cache(config: Any, capacity: int) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose full-attention layers are :class:`PreallocatedLayer`\\ s.

    Layers of any other kind (sliding window, linear attention) keep transformers' own class.
    """
    cache = DynamicCache(config=config)
    cache.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
