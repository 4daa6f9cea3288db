"""Generation backends behind one small interface.

A backend turns a user message into the model's prompt text (chat template) and draws ``n``
completions per prompt. Contract for resume-safe seeding: completion ``j`` of prompt ``i`` must
depend only on (prompt ``i``, ``seeds[i]``, ``j``) -- not on ``n`` or on other prompts.

- ``hf``: the project's reference engine (``soft_thinking.engines.hf.engine.SoftThinkingEngine``); one
  engine call per prompt with ``seed=seeds[i]`` (the engine seeds sample j from
  (seed, prompt index 0, j)).
- ``sglang``: an offline ``sglang.Engine`` with the SofT-GRPO SGLang plug-in
  (``soft_thinking.engines.sglang.client.SGLangEngine``; CUDA only, a 2-token soft self-test at start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eval.prompts import DEFAULT_TEMPLATE, build_prompt
from eval.settings import SamplingSettings
from soft_thinking.errors import SoftGRPOError

BACKENDS = ("hf", "sglang")


class BackendUnavailable(SoftGRPOError, RuntimeError):
    """The requested backend is not installed / not implemented."""


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int
    num_thinking_tokens: int = 0
    soft_share: float = 0.0
    finish_reason: str = ""
    time_s: float = 0.0


class Backend(Protocol):
    def format_prompt(self, user_problem: str, template: str = DEFAULT_TEMPLATE) -> str: ...

    def generate(self, prompts: Sequence[str], n: int, seeds: Sequence[int]) -> list[list[Completion]]: ...


class EngineBackend:
    """What every engine-backed backend shares: prompts through the tokenizer's chat template and one
    ``RolloutEngine.generate`` call per chunk of problems (subclasses set engine, tokenizer, config)."""

    engine: Any
    tokenizer: Any
    config: Any
    max_new_tokens: int
    batch_size: int = 64
    progress: bool = False

    def format_prompt(self, user_problem: str, template: str = DEFAULT_TEMPLATE) -> str:
        return build_prompt(self.tokenizer, user_problem, template)

    def generate(self, prompts: Sequence[str], n: int, seeds: Sequence[int]) -> list[list[Completion]]:
        # one engine call for all prompts; per-prompt seeds make each problem's samples the same as
        # if it were generated alone (finished rows leave the batch, so mixed lengths cost nothing)
        samples = self.engine.generate(
            list(prompts), self.config, n=n, max_new_tokens=self.max_new_tokens, seeds=[int(s) for s in seeds],
            batch_size=self.batch_size, progress=self.progress,
        )
        return [[_from_sample(s) for s in samples[i * n : (i + 1) * n]] for i in range(len(prompts))]


class HFBackend(EngineBackend):
    """Reference engine on transformers (``soft_thinking.engines.hf.engine``)."""

    def __init__(
        self, model: str, settings: SamplingSettings, *, device: str = "cpu", dtype: str = "float32",
        think_end: str = "</think>", progress: bool = False, batch_size: int = 64, trust_remote_code: bool = False,
    ) -> None:
        import torch

        from soft_thinking.engines.hf.engine import SoftThinkingEngine, resolve_think_end
        from soft_thinking.engines.hf.models import load_model

        self.model, self.tokenizer = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        torch_dtype = getattr(torch, dtype)
        self.engine = SoftThinkingEngine(self.model, self.tokenizer, device=device, dtype=torch_dtype)
        ids = tuple(resolve_think_end(self.tokenizer, think_end) or ())
        self.config = settings.to_soft_thinking_config(ids)
        self.max_new_tokens = settings.max_generated_tokens
        self.progress = progress
        self.batch_size = batch_size


class SGLangBackend(EngineBackend):
    """SGLang with the soft-thinking plug-in (``soft_thinking.engines.sglang.client``; needs CUDA)."""

    def __init__(self, model: str, settings: SamplingSettings, *, think_end: str = "</think>",
                 progress: bool = False, batch_size: int = 64, **engine_kwargs: Any) -> None:
        from soft_thinking.engines.hf.engine import resolve_think_end
        from soft_thinking.engines.sglang.client import SGLangEngine

        self.engine = SGLangEngine(model, **engine_kwargs)
        self.tokenizer = self.engine.tokenizer
        self.config = settings.to_soft_thinking_config(tuple(resolve_think_end(self.tokenizer, think_end) or ()))
        self.max_new_tokens = settings.max_generated_tokens
        self.progress = progress
        self.batch_size = batch_size


def _from_sample(s: Any) -> Completion:
    return Completion(
        text=s.text, num_tokens=int(s.num_tokens), num_thinking_tokens=int(s.num_thinking_tokens),
        soft_share=float(s.soft_share), finish_reason=str(s.finish_reason), time_s=float(s.time_s),
    )


def make_backend(name: str, model: str, settings: SamplingSettings, **kwargs: Any) -> Backend:
    if name == "hf":
        return HFBackend(model, settings, **kwargs)
    if name == "sglang":
        import importlib.util

        if importlib.util.find_spec("sglang") is None:
            raise BackendUnavailable("--backend sglang needs sglang 0.5.12 (`bash setup.sh --gpu`); use --backend hf "
                                     "(the reference engine) on a machine without it")
        kwargs.pop("device", None)  # SGLang places the model on its GPU (SGLangEngine refuses without CUDA)
        return SGLangBackend(model, settings, **kwargs)  # dtype goes to sglang.Engine(dtype=...), as recorded
    raise BackendUnavailable(f"--backend={name!r} is invalid: allowed {list(BACKENDS)}")
