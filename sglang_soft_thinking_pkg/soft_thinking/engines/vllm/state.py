"""The worker's soft-thinking state: slots, the step, the trace/history buffers and the soft inputs.

One :class:`SoftState` per worker process (``STATE``), created by the logits processor with the
persistent batch and read by the wrapper model's forward. Requests are identified by their
``extra_args['trace_key']``; a key owns a *slot* from admission until its trace is popped or
dropped (slot 0 is a neutral dummy). Per slot, on the device:

=====================  ==========================  ==============================================
field                  shape                       meaning
=====================  ==========================  ==============================================
``table``              :class:`SlotTable`          settings, seed, phase (the SGLang plug-in's)
``prompt_len``         ``[S]`` int64               the prompt's length
``next_key``           ``[S]`` int64               ``prompt_len + t`` of the next real sample
``h_ids, h_q, h_w``    ``[S, L, K]``               per generated token: candidates, q, weights
``h_lp, h_kept, h_fl`` ``[S, L]``                  log-prob, kept candidates, flags (codec's bits)
=====================  ==========================  ==============================================

Host side (only when the batch changes, :meth:`SoftState.update`): ``BatchUpdate``'s removed /
added / moved entries maintain the batch index -> slot map (one upload). Device side, every step
(:meth:`SoftState.step`, no host sync, no per-request loop)::

    key  = last position of the row + 1            (= prompt_len + t, the counter RNG's position)
    real = slot > 0 and key == next_key[slot]      (partial-prefill rows are sampled and discarded)
    step = core.batch.batched_decode_step(...)     via SlotTable.step on slot where(real, slot, 0)
    history[slot, key - prompt_len] = step         next_key += real
    logits[row] = -inf except step.tokens[row]     vLLM's own sampler then returns the core's token

Soft inputs (:meth:`SoftState.soft_inputs`, in the wrapper model's forward): the token at position
``p`` of slot ``s`` is fed ``sum_i w_i E[ids_i]`` (``core.mixture.mix_embeddings``) when
``history[s, p - prompt_len]`` is a soft step. Only each row's last token can be a generated one,
except after a resume (preemption or a re-added request): then every token is checked, so a
re-prefill re-injects the mixtures.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import Tensor

from soft_thinking.core.mixture import mix_embeddings
from soft_thinking.engines.sglang.codec import FLAG_ANSWER, FLAG_FORCED, FLAG_SOFT, FLAG_TRUNCATED
from soft_thinking.engines.sglang.settings import SettingsError
from soft_thinking.engines.sglang.table import SlotTable
from soft_thinking.engines.vllm.settings import VLLMSoftRequest, parse_request, plugin_state

logger = logging.getLogger("softgrpo.vllm")

STATE: SoftState | None = None


class TraceLost(KeyError):
    """A trace that was evicted (slots full) or never existed."""


class SoftState:
    """Per-worker soft-thinking state (module doc)."""

    def __init__(self, max_reqs: int, max_len: int, vocab_size: int, device: torch.device,
                 slots: int | None = None, prefix_caching: bool = False) -> None:
        self.plugin = plugin_state()
        self.spec = self.plugin.spec()
        self.max_reqs, self.max_len, self.vocab_size = max_reqs, max_len, vocab_size
        self.device = torch.device(device)
        self.n_slots = (slots or 2 * max_reqs) + 1  # slot 0: the dummy row of non-soft / non-real rows
        self.prefix_caching = prefix_caching
        self.batch_slot = np.zeros(max_reqs, dtype=np.int64)
        self.slot_of_batch = torch.zeros(max_reqs, dtype=torch.int64, device=self.device)
        self.n_soft = 0  # soft rows in the current batch (host)
        self.key_slot: dict[str, int] = {}
        self.requests: dict[int, VLLMSoftRequest] = {}
        self.idle: OrderedDict[int, None] = OrderedDict()  # owned slots not in the batch, oldest first
        self.free = list(range(self.n_slots - 1, 0, -1))
        self.evicted: set[str] = set()
        self.replay: dict[int, tuple[list[int], int]] = {}  # slot -> (output list, its length at re-admission)
        self.last_pos: Tensor | None = None
        self.table: SlotTable | None = None
        self.stats: dict[str, float] = {"admitted": 0, "resumed": 0, "evicted": 0, "steps": 0, "step_s": 0.0,
                                        "inputs_s": 0.0}

    # -- buffers (allocated at the first soft request: a dormant engine pays nothing) --------
    def _allocate(self) -> None:
        s, n, k, dev = self.n_slots, self.max_len, self.spec.k_max, self.device
        self.table = SlotTable(self.spec, rows=s, device=dev)
        self.prompt_len = torch.zeros(s, dtype=torch.int64, device=dev)
        self.next_key = torch.full((s,), -1, dtype=torch.int64, device=dev)
        self.h_ids = torch.zeros(s, n, k, dtype=torch.int32, device=dev)
        self.h_q = torch.zeros(s, n, k, dtype=torch.float32, device=dev)
        self.h_w = torch.zeros(s, n, k, dtype=torch.float32, device=dev)
        self.h_lp = torch.zeros(s, n, dtype=torch.float32, device=dev)
        self.h_kept = torch.zeros(s, n, dtype=torch.int16, device=dev)
        self.h_fl = torch.zeros(s, n, dtype=torch.uint8, device=dev)
        logger.info("softgrpo: soft-thinking state %d slots x %d positions x K=%d (width %d)", s - 1, n, k,
                    self.spec.width)

    # -- host side: batch changes --------------------------------------------------------------
    def update(self, batch_update: Any) -> None:
        """Apply ``BatchUpdate`` (removed, added, moved: in that order) to the batch -> slot map."""
        if self.replay:
            self._check_replay()
        if batch_update is None:
            return
        bs = self.batch_slot
        for idx in batch_update.removed:
            self._park(int(bs[idx]))
            bs[idx] = 0
        for idx, params, prompt_ids, output_ids in batch_update.added:
            self._park(int(bs[idx]))
            bs[idx] = self._admit(params, prompt_ids or [], output_ids)
        for a, b, direction in batch_update.moved:
            if direction.name == "SWAP":
                bs[a], bs[b] = bs[b], bs[a]
            else:
                self._park(int(bs[b]))
                bs[b], bs[a] = bs[a], 0
        bs[batch_update.batch_size:] = 0
        self.n_soft = int(np.count_nonzero(bs))
        self.slot_of_batch.copy_(torch.from_numpy(bs))

    def _park(self, slot: int) -> None:
        if slot:
            self.idle[slot] = None
            self.replay.pop(slot, None)

    def _admit(self, params: Any, prompt_ids: list[int], output_ids: list[int]) -> int:
        try:
            soft = parse_request(params, self.plugin, self.vocab_size)
        except SettingsError as exc:  # validate_params refused it already in the front end; never here
            raise SettingsError(f"softgrpo: a request the front end accepted is invalid in the worker: {exc}") from exc
        if soft is None:
            return 0
        if self.table is None:
            self._allocate()
        slot = self.key_slot.get(soft.key)
        if slot is None:
            slot = self._new_slot(soft.key)
        self.idle.pop(slot, None)
        self.requests[slot] = soft
        out = list(output_ids)
        self.table.admit([slot], [soft.request], [out])
        pl = len(prompt_ids)
        if pl + len(out) > self.max_len + 1:
            raise SettingsError(f"softgrpo: request {soft.key!r} is longer than max_model_len={self.max_len}")
        self.prompt_len[slot] = pl
        self.next_key[slot] = pl + len(out)
        self.stats["admitted"] += 1
        if out:
            self.stats["resumed"] += 1
            self.replay[slot] = (output_ids, len(out))
        return slot

    def _new_slot(self, key: str) -> int:
        if not self.free:
            if not self.idle:
                raise SettingsError(f"softgrpo: no free slot for {key!r} ({self.n_slots - 1} slots all running)")
            old, _ = self.idle.popitem(last=False)
            old_key = self.requests.pop(old).key
            del self.key_slot[old_key]
            self.evicted.add(old_key)
            self.stats["evicted"] += 1
            logger.warning("softgrpo: trace %r evicted (its slot was needed; pop traces as requests finish)", old_key)
            self.free.append(old)
        slot = self.free.pop()
        self.key_slot[key] = slot
        self.evicted.discard(key)
        self.h_fl[slot].zero_()
        return slot

    def _check_replay(self) -> None:
        """A resumed request leaves replay mode once it sampled again (its output list grew)."""
        for slot, (out, n) in list(self.replay.items()):
            if len(out) > n:
                del self.replay[slot]

    # -- device side ---------------------------------------------------------------------------
    def soft_inputs(self, embed: Any, weight: Tensor, input_ids: Tensor, positions: Tensor, qsl: Tensor) -> Tensor:
        """``inputs_embeds`` of a forward: ``embed(input_ids)`` with soft steps' mixtures (module doc)."""
        t0 = time.perf_counter()
        emb = embed(input_ids)
        b = qsl.shape[0] - 1
        last = qsl[1:] - 1
        self.last_pos = positions[last]
        if self.n_soft == 0 or self.table is None:
            return emb
        if self.replay:
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            batch = torch.searchsorted(qsl[1:], rows, right=True)
        else:
            rows, batch = last, torch.arange(b, device=input_ids.device)
        slot = self.slot_of_batch[batch]
        g = positions[rows] - self.prompt_len[slot]
        done = self.next_key[slot] - self.prompt_len[slot]
        gi = g.clamp(0, self.max_len - 1)
        on = (slot > 0) & (g >= 0) & (g < done) & ((self.h_fl[slot, gi] & FLAG_SOFT) != 0)
        mix = mix_embeddings(weight, self.h_ids[slot, gi], self.h_w[slot, gi]).to(emb.dtype)
        emb[rows] = torch.where(on.unsqueeze(-1), mix, emb[rows])
        self.stats["inputs_s"] += time.perf_counter() - t0  # host time (device work queued, on CPU: done)
        return emb

    def step(self, logits: Tensor) -> Tensor:
        """The core's batched step for the real samples of soft rows; forces their tokens (module doc)."""
        if self.n_soft == 0 or self.table is None:
            return logits
        if self.last_pos is None:
            raise RuntimeError("softgrpo: soft rows but no positions: the wrapper model did not run (is the "
                               "architecture a SoftGRPO one? see soft_thinking.engines.vllm.client.engine_kwargs)")
        t0 = time.perf_counter()
        b = logits.shape[0]
        slots = self.slot_of_batch[:b]
        key = self.last_pos[:b] + 1
        real = (slots > 0) & (key == self.next_key[slots])
        eff = torch.where(real, slots, torch.zeros_like(slots))
        out = self.table.step(logits, eff, key)
        t = (key - self.prompt_len[eff]).clamp(0, self.max_len - 1)
        flags = (out.soft.to(torch.uint8) * FLAG_SOFT + out.answer.to(torch.uint8) * FLAG_ANSWER
                 + out.truncated.to(torch.uint8) * FLAG_TRUNCATED + out.forced.to(torch.uint8) * FLAG_FORCED)
        self.h_ids[eff, t] = out.ids.to(torch.int32)
        self.h_q[eff, t] = out.q
        self.h_w[eff, t] = out.weights
        self.h_lp[eff, t] = out.logprobs.to(torch.float32)
        self.h_kept[eff, t] = out.n_kept.to(torch.int16)
        self.h_fl[eff, t] = flags
        self.next_key[eff] = self.next_key[eff] + real.to(torch.int64)
        keep = torch.arange(logits.shape[1], device=logits.device) == out.tokens.unsqueeze(-1)
        logits.masked_fill_(real.unsqueeze(-1) & ~keep, float("-inf"))
        self.stats["steps"] += 1
        self.stats["step_s"] += time.perf_counter() - t0
        return logits

    # -- traces ----------------------------------------------------------------------------------
    def pop(self, key: str, length: int) -> dict[str, Any]:
        """The first ``length`` trace rows of ``key`` (host lists), and the slot freed."""
        if key in self.evicted:
            self.evicted.discard(key)
            raise TraceLost(f"softgrpo: trace {key!r} was evicted before it was popped (more unpopped soft "
                            f"requests than {self.n_slots - 1} slots)")
        slot = self.key_slot.get(key)
        if slot is None:
            raise TraceLost(f"softgrpo: no trace for {key!r} (not a soft request, or popped already)")
        k = self.requests[slot].request.config.max_topk
        n = min(length, self.max_len)
        rows = {"ids": self.h_ids[slot, :n, :k], "q": self.h_q[slot, :n, :k], "logprob": self.h_lp[slot, :n],
                "n_kept": self.h_kept[slot, :n], "flags": self.h_fl[slot, :n]}
        rows = {name: v.cpu().tolist() for name, v in rows.items()}  # plain lists survive vLLM's RPC encoding
        rows["recorded"] = int(self.next_key[slot] - self.prompt_len[slot])
        self.drop([key])
        return rows

    def drop(self, keys: list[str]) -> int:
        """Free the slots of ``keys`` (aborted requests); returns how many were held."""
        n = 0
        for key in keys:
            self.evicted.discard(key)
            slot = self.key_slot.pop(key, None)
            if slot is None:
                continue
            n += 1
            self.requests.pop(slot, None)
            self.idle.pop(slot, None)
            self.replay.pop(slot, None)
            if slot in self.batch_slot:  # still running (an abort): the row stays, its state goes
                self.batch_slot[self.batch_slot == slot] = 0
                self.n_soft = int(np.count_nonzero(self.batch_slot))
                self.slot_of_batch.copy_(torch.from_numpy(self.batch_slot))
            self.next_key[slot] = -1
            self.free.append(slot)
        return n
