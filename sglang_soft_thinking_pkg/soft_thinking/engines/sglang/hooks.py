"""The four SGLang hooks (sglang 0.5.12 and 0.5.12.post1; names in ``../shared/notes/sglang-0.5.12-plugin.md``).

====================================================================  ======  =====================================
target                                                                type    job
====================================================================  ======  =====================================
``sglang.srt.model_executor.model_runner.ModelRunner.load_model``      AFTER   refusals, self-check, slot table,
                                                                              wrap the instance's ``model.forward``
``sglang.srt.model_executor.model_runner.ModelRunner.sample``          AROUND  soft step, token override, table, trace
``sglang.srt.managers.schedule_batch.Req.__init__``                    AFTER   parse ``custom_params``; errors abort
                                                                              the request; private radix ``extra_key``
``sglang.srt.sampling.sampling_params.SamplingParams.verify``          AFTER   the same checks, early, in the launcher
====================================================================  ======  =====================================

The sample hook never synchronises with the device: request settings travel host -> device only at
prefill (one pinned copy), per-slot state is updated with ``index_copy_``, and the trace leaves
through one non-blocking copy; so the overlap scheduler and CUDA graphs stay on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from soft_thinking.core.batch import BatchSpec
from soft_thinking.core.noise import NOISE_KINDS
from soft_thinking.engines.sglang.codec import TRACE_KEY, RowBytes, pack_rows
from soft_thinking.engines.sglang.mixture import wrap_forward
from soft_thinking.engines.sglang.refusals import server_refusals
from soft_thinking.engines.sglang.settings import (
    SamplingView,
    SettingsError,
    SoftRequest,
    default_flags,
    parse_soft_request,
    plugin_mode,
    server_kinds,
    server_widths,
    unsupported,
)
from soft_thinking.engines.sglang.table import TABLE_ROWS, SlotTable
from soft_thinking.errors import SoftGRPOError

logger = logging.getLogger("softgrpo.sglang")

MODEL_RUNNER = "sglang.srt.model_executor.model_runner.ModelRunner"
TARGETS = {
    "load_model": f"{MODEL_RUNNER}.load_model",
    "sample": f"{MODEL_RUNNER}.sample",
    "req_init": "sglang.srt.managers.schedule_batch.Req.__init__",
    "verify": "sglang.srt.sampling.sampling_params.SamplingParams.verify",
}
#: batch-level settings every soft request on one server shares (the step's static constants)
SERVER_FIELDS = ("gumbel_clamp", "dirichlet_alpha", "gaussian_sigma", "gaussian_clip", "logprob_mode", "logp_floor",
                 "degenerate_as_discrete")


@dataclass
class PluginState:
    """Process-wide state: the mode, the server defaults and the live soft requests by rid."""

    mode: str
    defaults: dict[str, Any]
    k_max: int
    width: int
    refusals: list[str] = field(default_factory=list)
    requests: weakref.WeakValueDictionary = field(default_factory=weakref.WeakValueDictionary)
    kinds: tuple[str, ...] = NOISE_KINDS  # the noise kinds the step draws (SOFTGRPO_SGLANG_NOISE_KINDS)

    @classmethod
    def from_env(cls, environ: Any = os.environ) -> PluginState:
        k_max, width = server_widths(environ)
        return cls(plugin_mode(environ), default_flags(environ), k_max, width, kinds=server_kinds(environ))

    def parse(self, custom_params: Any, sp: Any, vocab_size: int | None) -> SoftRequest | None:
        req = parse_soft_request(custom_params, SamplingView.of(sp), defaults=self.defaults, k_max=self.k_max,
                                 width=self.width, vocab_size=vocab_size)
        if req is not None:
            server = self.server_config()
            for name in SERVER_FIELDS:
                if getattr(req.config, name) != getattr(server, name):
                    raise SettingsError(f"{name}={getattr(req.config, name)!r} differs from this server's "
                                        f"{getattr(server, name)!r} (set it in SOFTGRPO_SGLANG_CONFIG)")
            if req.config.effective_noise not in self.kinds:
                raise SettingsError(f"noise={req.config.effective_noise!r} (this request's effective kind) is not drawn "
                                    f"by this server: allowed {self.kinds} (SOFTGRPO_SGLANG_NOISE_KINDS)")
        return req

    def server_config(self):
        from soft_thinking.core.config import SoftThinkingConfig

        return SoftThinkingConfig.from_flags({k: v for k, v in self.defaults.items() if k not in ("seed", "on_retract")},
                                             aliases={"think_end_ids": "think_end_token_ids"})

    def spec(self) -> BatchSpec:
        cfg = self.server_config()
        params = cfg.noise_params()
        opts = cfg.logprob_options()
        return BatchSpec(k_max=self.k_max, width=self.width, kinds=self.kinds, params=params, opts=opts)


STATE: PluginState | None = None


def state() -> PluginState:
    global STATE
    if STATE is None:
        STATE = PluginState.from_env()
    return STATE


def _hooked(obj: Any) -> bool:
    return hasattr(obj, "__wrapped__")


# ---------------------------------------------------------------------------------------------
def after_load_model(result: Any, runner: Any, *args: Any, **kwargs: Any) -> None:
    """Check the server, allocate the slot table and wrap ``runner.model.forward``."""
    st = state()
    from sglang.srt.managers.schedule_batch import Req
    from sglang.srt.model_executor.model_runner import ModelRunner

    problems = server_refusals(runner.server_args, getattr(runner.model_config.hf_config, "architectures", None))
    if not (_hooked(ModelRunner.sample) and _hooked(Req.__init__)):
        problems.append("the ModelRunner.sample / Req.__init__ hooks were not applied (see the plug-in loader's log)")
    if problems:
        msg = "soft thinking is refused on this server: " + "; ".join(problems)
        if st.mode == "require":
            raise SoftGRPOError(msg + " (SOFTGRPO_SGLANG=require)")
        logger.warning("%s; soft requests will be rejected (SOFTGRPO_SGLANG=on)", msg)
        st.refusals = problems
        return
    model = runner.model
    device = next(model.parameters()).device
    table = SlotTable(st.spec(), rows=TABLE_ROWS, device=device, compile_step=compile_flag(device=device))
    runner._softgrpo_table = table
    wrap_forward(model, table, model.get_input_embeddings())
    logger.info("soft-thinking plug-in active: table %d x %d, candidate width %d", TABLE_ROWS, st.k_max, st.width)


def after_req_init(result: Any, req: Any, *args: Any, **kwargs: Any) -> None:
    """Parse the request's flags; a soft request gets a private radix key; errors abort the request."""
    st = state()
    st.requests[req.rid] = req  # every request: an extend batch re-initialises the slots of all its rows
    try:
        soft = st.parse(req.sampling_params.custom_params, req.sampling_params, getattr(req, "vocab_size", None))
        if soft is None:
            return
        problems = unsupported(SamplingView(), getattr(req, "top_logprobs_num", 0), getattr(req, "token_ids_logprob", None),
                               getattr(req, "return_hidden_states", False))
        if problems:
            raise SettingsError("soft request: " + "; ".join(problems))
        if st.refusals:
            raise SettingsError("soft thinking is refused on this server: " + "; ".join(st.refusals))
    except SoftGRPOError as exc:
        req.set_finish_with_abort(f"softgrpo: {exc}")
        return
    req._softgrpo = soft
    req.extra_key = (req.extra_key or "") + f"|softgrpo:{req.rid}"  # soft KV is never shared through the radix cache


def after_verify(result: Any, sp: Any, vocab_size: int, *args: Any, **kwargs: Any) -> None:
    """Early, clear errors in the launcher (the tokenizer manager turns them into a request error)."""
    state().parse(sp.custom_params, sp, vocab_size)


def around_sample(original: Any, runner: Any, logits_output: Any, forward_batch: Any) -> torch.Tensor:
    """Soft rows get the core's batched step; everything else goes to SGLang's sampler unchanged."""
    table: SlotTable | None = getattr(runner, "_softgrpo_table", None)
    rids = forward_batch.rids or []
    if table is None or not rids:
        return original(runner, logits_output, forward_batch)
    st = state()
    reqs = [st.requests.get(rid) for rid in rids]
    soft = [getattr(r, "_softgrpo", None) for r in reqs]
    extend = not forward_batch.forward_mode.is_decode()
    if not any(soft) and not table.dirty:
        return original(runner, logits_output, forward_batch)
    if forward_batch.req_to_token_pool.req_to_token.shape[0] > table.rows:
        raise SoftGRPOError(f"req_to_token_pool has {forward_batch.req_to_token_pool.req_to_token.shape[0]} rows; "
                            f"the slot table {table.rows}")
    logits = logits_output.next_token_logits
    b = logits.shape[0]
    retracted = None
    if extend:  # (re-)admit every request of the batch: slots are reused by later requests
        slots_host = [_slot(r, i, forward_batch) for i, r in enumerate(reqs)]
        outs = [list(r.output_ids) if r is not None and s is not None else [] for r, s in zip(reqs, soft)]
        for r, s, out in zip(reqs, soft, outs):
            if s is not None and out and s.on_retract == "abort":
                r.set_finish_with_abort("softgrpo: soft request retracted (its soft history was lost); on_retract=abort")
        table.admit(slots_host, soft, outs)
        table.dirty = True
        retracted = table.upload(torch.tensor([bool(o) for o in outs]))
    slots = forward_batch.req_pool_indices[:b]
    with sync_debug(logits.device):
        step = table.step(logits, slots, forward_batch.seq_lens[:b])  # before `original` scales logits in place
    next_ids = original(runner, logits_output, forward_batch)
    with sync_debug(logits.device):
        soft_row = table.soft_req[slots]
        out = torch.where(soft_row, step.tokens.to(next_ids.dtype), next_ids)
        lp = getattr(logits_output, "next_token_logprobs", None)
        if forward_batch.return_logprob and lp is not None:
            logits_output.next_token_logprobs = torch.where(soft_row, step.logprobs.to(lp.dtype), lp)
        widths = [s.config.max_topk if s is not None else table.spec.k_max for s in soft]  # rows at each request's K
        logits_output.customized_info = {TRACE_KEY: RowBytes(pack_rows(step, retracted), widths)}  # a new dict each step
    return out


def compile_flag(environ: Any = os.environ, device: torch.device | str = "cpu") -> bool:
    """Whether the sample step runs as one ``torch.compile`` graph per batch bucket.

    ``SOFTGRPO_SGLANG_COMPILE``: ``auto`` (default) compiles on CUDA, where each eager aten op is a kernel
    launch, and stays eager on CPU; ``1`` / ``0`` force it on / off (floats differ from eager by ~1e-6).
    """
    raw = environ.get("SOFTGRPO_SGLANG_COMPILE", "auto").strip()
    if raw not in ("auto", "0", "1"):
        raise SettingsError(f"SOFTGRPO_SGLANG_COMPILE={raw!r} is invalid: allowed 'auto', '0' or '1'")
    if raw == "auto":
        return torch.device(device).type == "cuda"
    return raw == "1"


@contextlib.contextmanager
def sync_debug(device: torch.device) -> Iterator[None]:
    """With ``SOFTGRPO_SGLANG_SYNC_DEBUG=1``: any host sync in the plug-in's own device code raises."""
    if device.type != "cuda" or os.environ.get("SOFTGRPO_SGLANG_SYNC_DEBUG") != "1":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _slot(req: Any, i: int, forward_batch: Any) -> int:
    if req is not None and getattr(req, "req_pool_idx", None) is not None:
        return int(req.req_pool_idx)
    raise SoftGRPOError(f"no Req with a req_pool_idx for row {i} (rid {forward_batch.rids[i]!r}) of an extend batch")


HOOKS = {
    TARGETS["load_model"]: (after_load_model, "AFTER"),
    TARGETS["sample"]: (around_sample, "AROUND"),
    TARGETS["req_init"]: (after_req_init, "AFTER"),
    TARGETS["verify"]: (after_verify, "AFTER"),
}
