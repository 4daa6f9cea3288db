"""The slot table: every soft request's state on the device, indexed by SGLang's ``req_pool_idx``.

A scheduler process holds at most 4096 requests, and ``ReqToTokenPool`` reserves row 0 for padding,
so the table has ``R = 4097`` rows, allocated once before CUDA-graph capture (its addresses must
stay stable), zero-initialised (every stored id is a valid token id) and written only from the
sample hook, with ``index_copy_`` at the batch's slots:

=================  ==========================  =================================================
field              shape                       meaning
=================  ==========================  =================================================
``ids``, ``w``     ``[R, K]`` int64 / float32  the next input's candidates and weights
``mix_on``         ``[R]`` bool                the next input is a mixture (the step was soft)
``soft_req``       ``[R]`` bool                the slot holds a soft request
``seed``           ``[R]`` int64               the request's RNG seed (counter RNG key)
``rows``           :class:`RowSettings`        per-request filters, noise, tau_g, K, compat
``phase``          :class:`PhaseState`         thinking, think-end window, Cold Stop counters
=================  ==========================  =================================================

:meth:`SlotTable.admit` (host, at prefill) writes the settings of new or re-prefilled requests
with one host-to-device copy; :meth:`SlotTable.step` (device only, no host sync) gathers the
batch's rows, runs the core's batched step with counter-RNG uniforms keyed by ``(seed, seq_len)``
and writes the new state back for the soft requests' rows. With ``compile_step=True`` that whole
device step is one ``torch.compile(fullgraph=True)`` graph per batch bucket: the batch is padded to
:func:`~soft_thinking.core.batch.batch_bucket` rows pointing at slot 0 (SGLang's padding slot, never
a soft request: its state is written back unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import torch
from torch import Tensor

from soft_thinking.core.batch import (
    BatchSpec,
    BatchStep,
    RowSettings,
    batch_bucket,
    sample_step,
)
from soft_thinking.core.noise import NOISE_KINDS
from soft_thinking.core.phase import PhaseState
from soft_thinking.core.sampling import SamplingTensors
from soft_thinking.engines.sglang.settings import SoftRequest

TABLE_ROWS = 4097


def restored_phase(req: SoftRequest, output_ids: Sequence[int]) -> tuple[bool, list[int]]:
    """``(thinking, last m tokens)`` of a request re-prefilled after a retraction, from its output ids.

    Thinking ended if the think-end sequence occurs in the output; Cold Stop counters restart.
    """
    cfg = req.config
    end = list(cfg.think_end_token_ids) if cfg.enable_soft_thinking else []
    out = list(output_ids)
    ended = bool(end) and any(out[i:i + len(end)] == end for i in range(len(out) - len(end) + 1))
    return cfg.enable_soft_thinking and not ended, out[-max(len(end), 1):] if out else []


class SlotTable:
    """Per-slot state of soft requests (module doc)."""

    def __init__(self, spec: BatchSpec, rows: int = TABLE_ROWS, think_end_width: int = 8,
                 device: torch.device | str = "cpu", compile_step: bool = False,
                 compile_backend: str = "inductor") -> None:
        self.spec, self.rows, self.device = spec, rows, torch.device(device)
        k = spec.k_max
        self.ids = torch.zeros(rows, k, dtype=torch.int64, device=self.device)
        self.w = torch.zeros(rows, k, dtype=torch.float32, device=self.device)
        self.mix_on = torch.zeros(rows, dtype=torch.bool, device=self.device)
        self.soft_req = torch.zeros(rows, dtype=torch.bool, device=self.device)
        self.seed = torch.zeros(rows, dtype=torch.int64, device=self.device)
        self.settings = _settings([], rows, k, self.device)
        self.phase = PhaseState.new(rows, [[0] * think_end_width] * rows, soft_thinking=False, device=self.device)
        self.think_end_width = think_end_width
        self.dirty = False  # a soft request was admitted once: slots may hold state a new owner must reset
        self.compiled = (torch.compile(self._step, fullgraph=True, dynamic=False, backend=compile_backend)
                         if compile_step else None)

    # -- host side: admission at prefill ---------------------------------------------------
    def admit(self, slots: Sequence[int], requests: Sequence[SoftRequest | None],
              output_ids: Sequence[Sequence[int]] | None = None) -> None:
        """Initialise ``slots`` for their requests (``None``: a discrete request, slot marked not soft).

        ``output_ids``: the tokens a re-prefilled (retracted) request already produced; its phase is
        restored from them. Idempotent, so chunked prefill may admit a request at every chunk.
        """
        if not slots:
            return
        output_ids = output_ids or [[] for _ in slots]
        b, k, m = len(slots), self.spec.k_max, self.think_end_width
        soft = [r is not None for r in requests]
        reqs = [r for r in requests if r is not None]
        for r in reqs:
            if len(r.config.think_end_token_ids) > m:
                raise ValueError(f"think_end_ids has {len(r.config.think_end_token_ids)} pieces; the table holds {m}")
            if r.config.max_topk > k:
                raise ValueError(f"max_topk={r.config.max_topk} exceeds the table width {k}")
            if r.config.effective_noise not in self.spec.kinds:  # its draw would not be computed
                raise ValueError(f"noise={r.config.effective_noise!r} is not among the table's kinds {self.spec.kinds}")
        ends, thinking, windows = [], [], []
        for r, out in zip(requests, output_ids):
            if r is None:
                ends.append([]), thinking.append(False), windows.append([])
                continue
            think, window = restored_phase(r, out)
            ends.append(list(r.config.think_end_token_ids) if r.config.enable_soft_thinking else [])
            thinking.append(think)
            windows.append(window[-m:])
        phase = PhaseState.new(
            b + 1, [[0] * m] + ends, soft_thinking=[False] + thinking,
            entropy_threshold=[0.0] + [r.config.early_stopping_entropy_threshold if r else 0.0 for r in requests],
            length_threshold=[1] + [r.config.early_stopping_length_threshold if r else 1 for r in requests],
        ).select(torch.arange(1, b + 1))  # the dummy first row fixes the width m
        for i, window in enumerate(windows):
            if window:
                phase.window[i, m - len(window):] = torch.tensor(window, dtype=torch.int64)
        idx = torch.tensor(list(slots), dtype=torch.int64)
        settings = _settings(requests, b, k, "cpu")
        seed = torch.tensor([r.seed if r else 0 for r in requests], dtype=torch.int64)
        on = torch.tensor(soft)
        self._write(idx, settings, phase, seed, on, torch.zeros(b, dtype=torch.bool))

    def _write(self, idx: Tensor, settings: RowSettings, phase: PhaseState, seed: Tensor, soft: Tensor,
               mix_on: Tensor) -> None:
        dev = self.upload
        idx = dev(idx)
        self.settings_scatter_(idx, _map(settings, dev))
        self.phase.scatter_(idx, PhaseState(**{f.name: dev(getattr(phase, f.name)) for f in fields(phase)}))
        self.seed.index_copy_(0, idx, dev(seed))
        self.soft_req.index_copy_(0, idx, dev(soft))
        self.mix_on.index_copy_(0, idx, dev(mix_on))
        self.ids.index_fill_(0, idx, 0)
        self.w.index_fill_(0, idx, 0.0)

    def upload(self, t: Tensor) -> Tensor:
        """A host tensor on the table's device: pinned and non-blocking on CUDA (no stream sync)."""
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def settings_scatter_(self, idx: Tensor, part: RowSettings) -> None:
        for f in fields(RowSettings):
            mine, theirs = getattr(self.settings, f.name), getattr(part, f.name)
            if isinstance(mine, SamplingTensors):
                for g in fields(SamplingTensors):
                    getattr(mine, g.name).index_copy_(0, idx, getattr(theirs, g.name))
            else:
                mine.index_copy_(0, idx, theirs)

    # -- device side: one step -------------------------------------------------------------
    def step(self, logits: Tensor, slots: Tensor, seq_lens: Tensor) -> BatchStep:
        """The batched step for the rows in ``slots`` (positions = ``seq_lens``); updates the soft rows in place.

        Sync-free: gathers, :func:`~soft_thinking.core.batch.sample_step`, ``index_copy_`` of
        ``where(soft_req, new, old)``; compiled, padded to the batch bucket (module doc).
        """
        if self.compiled is None:
            return self._step(logits, slots, seq_lens)
        b = logits.shape[0]
        pad = batch_bucket(b) - b
        if pad:
            logits = torch.cat([logits, logits.new_zeros(pad, logits.shape[1])])
            slots = torch.cat([slots, slots.new_zeros(pad)])  # slot 0: SGLang's padding slot
            seq_lens = torch.cat([seq_lens, seq_lens.new_zeros(pad)])
        out = self.compiled(logits, slots, seq_lens)
        return BatchStep(**{f.name: getattr(out, f.name)[:b] for f in fields(out)}) if pad else out

    def _step(self, logits: Tensor, slots: Tensor, seq_lens: Tensor) -> BatchStep:
        phase = self.phase.select(slots)
        rows = self.settings.select(slots)
        soft_req = self.soft_req[slots]
        out, new_phase = sample_step(logits, phase, rows, self.seed[slots], seq_lens.to(torch.int64), self.spec)
        keep = soft_req

        def pick(new: Tensor, old: Tensor) -> Tensor:
            return torch.where(keep.view(-1, *([1] * (new.dim() - 1))), new, old)

        merged = PhaseState(**{f.name: pick(getattr(new_phase, f.name), getattr(phase, f.name)) for f in fields(phase)})
        self.phase.scatter_(slots, merged)
        self.ids.index_copy_(0, slots, pick(out.ids, self.ids[slots]))
        self.w.index_copy_(0, slots, pick(out.weights, self.w[slots]))
        self.mix_on.index_copy_(0, slots, out.soft & keep)
        return out


def _settings(requests: Sequence[SoftRequest | None], b: int, k: int, device: torch.device | str) -> RowSettings:
    """Per-row settings of ``requests`` (all zeros/neutral for ``None`` rows and an empty list)."""
    cfgs = [r.config if r is not None else None for r in requests] + [None] * (b - len(requests))

    def vec(values: list, dtype: torch.dtype) -> Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    def filters(prefix: str) -> SamplingTensors:
        def col(name: str, neutral: float) -> list:
            return [getattr(c, prefix + name) if c is not None else neutral for c in cfgs]

        return SamplingTensors(vec(col("temperature", 1.0), torch.float32), vec(col("top_k", -1), torch.int64),
                               vec(col("top_p", 1.0), torch.float32), vec(col("min_p", 0.0), torch.float32))

    def answer_or_think(c):  # the answer filters of a row, the thinking ones with compat or soft off
        return c is not None and c.enable_soft_thinking and not c.compat_stale_phase_mask

    think = filters("")
    ans = filters("answer_")
    real = torch.tensor([answer_or_think(c) for c in cfgs], dtype=torch.bool, device=device)
    answer = SamplingTensors(*(torch.where(real, getattr(ans, f.name), getattr(think, f.name))
                               for f in fields(SamplingTensors)))
    return RowSettings(
        think=think,
        answer=answer,
        noise=vec([NOISE_KINDS.index(c.effective_noise) if c else 0 for c in cfgs], torch.int64),
        tau_g=vec([c.gumbel_softmax_temperature if c else 1.0 for c in cfgs], torch.float64),
        noise_factor=vec([c.noise_factor if c else 1.0 for c in cfgs], torch.float64),
        max_topk=vec([c.max_topk if c else 1 for c in cfgs], torch.int64),
        compat_stale_phase_mask=vec([bool(c and c.compat_stale_phase_mask) for c in cfgs], torch.bool),
    )


def _map(settings: RowSettings, fn) -> RowSettings:
    def one(x):
        return SamplingTensors(*(fn(getattr(x, g.name)) for g in fields(SamplingTensors))) if isinstance(
            x, SamplingTensors) else fn(x)

    return RowSettings(**{f.name: one(getattr(settings, f.name)) for f in fields(RowSettings)})
