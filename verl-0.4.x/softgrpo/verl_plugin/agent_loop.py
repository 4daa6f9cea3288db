"""The ``soft_single_turn`` agent loop: verl's single-turn loop that also ships the soft trace.

The rollout server (``hf_soft`` on CPU, the SGLang plug-in on GPU) returns the trace serialized in
``TokenOutput.extra_fields["softgrpo_trace"]``. This loop pops it (so it is not shipped to every reward
call), checks it is the response step for step, and returns a :class:`SoftAgentLoopOutput` whose
``as_dict()`` adds the per-token soft fields of :mod:`softgrpo.verl_plugin.fields`. verl's
``AgentLoopWorkerTQ`` puts them into TransferQueue; the engine receives them aligned with ``input_ids``.
"""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr
from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from soft_thinking.core.trace import SoftTrace
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.fields import TRACE_KEY, check_trace_matches, trace_fields
from softgrpo.verl_plugin.registration import AGENT_LOOP_NAME
from softgrpo.verl_plugin.settings import max_topk, soft_section


class SoftAgentLoopOutput(AgentLoopOutput):
    """``AgentLoopOutput`` plus the soft fields (kept private, so pydantic never dumps the tensors)."""

    _soft_fields: dict[str, Any] | None = PrivateAttr(default=None)

    @classmethod
    def from_output(cls, output: AgentLoopOutput, trace: SoftTrace, k: int) -> SoftAgentLoopOutput:
        check_trace_matches(trace, output.response_ids)
        soft = cls(**{name: getattr(output, name) for name in output.model_fields_set})
        soft._soft_fields = trace_fields(trace, len(output.prompt_ids), k)
        return soft

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        if self._soft_fields is None:
            raise SoftGRPOError("SoftAgentLoopOutput without soft fields (build it with from_output)")
        out.update(self._soft_fields)
        return out


@register(AGENT_LOOP_NAME)
class SoftSingleTurnAgentLoop(SingleTurnAgentLoop):
    """``SingleTurnAgentLoop`` whose output carries the rollout's soft trace."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.soft_k = max_topk(soft_section(self.rollout_config.get("custom")))

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        output = await super().run(sampling_params, **kwargs)
        blob = output.extra_fields.pop(TRACE_KEY, None)
        if blob is None:
            raise SoftGRPOError(
                f"the rollout server returned no soft trace (extra_fields[{TRACE_KEY!r}]): "
                f"actor_rollout_ref.rollout.name={self.rollout_config.name!r} must be hf_soft, or sglang "
                "with the SoftGRPO SGLang plug-in, or vllm"
            )
        return SoftAgentLoopOutput.from_output(output, SoftTrace.from_bytes(blob), self.soft_k)
