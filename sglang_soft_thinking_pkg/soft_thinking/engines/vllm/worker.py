"""Worker-side RPCs of the plug-in, mixed into vLLM's worker with ``worker_extension_cls``.

vLLM's ``ModelRunnerOutput`` has no per-request extra output, so traces stay in the worker
(:class:`~soft_thinking.engines.vllm.state.SoftState`) and the client pulls them by key with
``LLM.collective_rpc("softgrpo_pop_traces", args=(items,))`` as requests finish; aborted requests'
keys are dropped with ``softgrpo_drop_traces``. Method names are prefixed so they never shadow a
worker's own (vLLM refuses conflicts).
"""

from __future__ import annotations

from typing import Any

import torch

from soft_thinking.engines.vllm import state as soft_state

EXTENSION = "soft_thinking.engines.vllm.worker.SoftWorkerExtension"


class SoftWorkerExtension:
    """RPCs callable by name through ``collective_rpc``."""

    def softgrpo_active(self) -> bool:
        """Whether this worker built the soft-thinking state (the logits processor is installed)."""
        return soft_state.STATE is not None

    def softgrpo_stats(self) -> dict[str, float]:
        """Counters of this worker: soft admissions, resumes (re-admissions with output), evictions."""
        st = soft_state.STATE
        return {} if st is None else dict(st.stats)

    def softgrpo_pop_traces(self, items: list[tuple[str, int]]) -> dict[str, Any]:
        """``{key: rows}`` for ``(key, length)`` items (a string with the reason for a lost trace)."""
        st = soft_state.STATE
        out: dict[str, Any] = {}
        for key, length in items:  # the state's tensors were made under the runner's inference mode
            if st is None:
                out[key] = "softgrpo: the soft-thinking logits processor is not installed in this engine"
                continue
            try:
                with torch.inference_mode():
                    out[key] = st.pop(key, int(length))
            except soft_state.TraceLost as exc:
                out[key] = str(exc.args[0])
        return out

    def softgrpo_drop_traces(self, keys: list[str]) -> int:
        st = soft_state.STATE
        if st is None:
            return 0
        with torch.inference_mode():
            return st.drop(list(keys))
