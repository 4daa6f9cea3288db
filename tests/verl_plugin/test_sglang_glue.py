"""The SGLang glue on CPU, both recipe arms: a recipe script's config (through ``softgrpo.main_ppo``'s
start-up step) -> the Ray runtime env of the rollout server -> the plug-in's replica loader ->
``SoftSGLangHttpServer.launch_server`` / ``generate`` (verl's own ``SGLangHttpServer`` code runs) ->
the ``soft_single_turn`` agent loop -> the per-token soft fields verl ships to the trainer.

sglang itself is replaced only at the boundary it owns (``tokenizer_manager.generate_request``, plus
the placeholder modules verl's server imports): :mod:`sglang_standin` answers as sglang 0.5.12 with
our plug-in, on or off, using the plug-in's own request parser and trace codec.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sglang_standin import N_SOFT, StandInTokenizerManager, discrete_logprobs, response_tokens, sglang_standin
from verl_assets import make_model

from soft_thinking.errors import SoftGRPOError

REPO = Path(__file__).resolve().parents[2]
ARMS = {"soft": "SofT-GRPO-deepscaler-8k.sh", "grpo": "GRPO-deepscaler-8k.sh"}
PROMPT = [{"role": "user", "content": "Compute 2+3."}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("sglang_glue"))


@pytest.fixture
def clean_env():
    """``main_ppo``'s start-up step exports the run's env vars into its process: undo that after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def recipe_config(arm: str, model: Path, tok: Path, *extra: str):
    """The recipe script's overrides (DRY_RUN) with the tiny model, composed as ``main_ppo`` composes them."""
    out = subprocess.run(["bash", str(REPO / "scripts" / ARMS[arm])], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DRY_RUN": "overrides", "RUN_DIR": "/nonexistent/run"}, check=True)
    args = out.stdout.splitlines()
    name = args[0].removeprefix("--config-name=")
    overrides = args[1:] + [f"actor_rollout_ref.model.path={model}", f"actor_rollout_ref.model.tokenizer_path={tok}",
                            "data.max_prompt_length=64", "data.max_response_length=16",
                            "actor_rollout_ref.rollout.prompt_length=64", "actor_rollout_ref.rollout.response_length=16",
                            *extra]
    with initialize_config_dir(config_dir=str(REPO / "configs" / "verl"), version_base=None):
        return compose(config_name=name, overrides=overrides)


def server_env(config) -> dict[str, str]:
    """What Ray gives the rollout server's process: the run's ``runtime_env.env_vars`` after start-up."""
    from softgrpo.main_ppo import prepare

    prepare(config)
    env = OmegaConf.to_container(config.ray_kwargs.ray_init.runtime_env.env_vars, resolve=True)
    return {str(k): str(v) for k, v in env.items()}


class LocalServerManager:
    """verl's ``LLMServerClient.generate`` minus Ray and routing: calls the server's ``generate`` directly."""

    def __init__(self, server) -> None:
        self.server = server

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, video_data=None, **kwargs):
        return await self.server.generate(request_id=request_id, prompt_ids=prompt_ids,
                                          sampling_params=dict(sampling_params), image_data=image_data,
                                          video_data=None)


async def _drive(config, tok_path: Path, manager: StandInTokenizerManager, monkeypatch):
    """Replica loader -> server (launch + generate through the agent loop); returns the loop's ``as_dict()``."""
    from transformers import AutoTokenizer
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap
    from verl.workers.rollout.replica import RolloutMode, RolloutReplicaRegistry

    replica_cls = RolloutReplicaRegistry.get("sglang")
    assert replica_cls.__name__ == "SoftSGLangReplica"
    rollout, model = config.actor_rollout_ref.rollout, config.actor_rollout_ref.model
    replica = replica_cls(0, rollout, model, gpus_per_node=1)
    server_cls = replica.server_class.__ray_metadata__.modified_class
    from verl.workers.rollout.sglang_rollout import async_sglang_server

    from softgrpo.verl_plugin.sglang_rollout import SoftSGLangHttpServer

    assert issubclass(server_cls, SoftSGLangHttpServer)

    async def no_http(app, server_args, address):  # verl serves sglang's FastAPI app; no HTTP in this test
        return 30000, None

    monkeypatch.setattr(async_sglang_server, "run_uvicorn", no_http)
    server = server_cls(config=rollout, model_config=model, rollout_mode=RolloutMode.HYBRID, workers=[],
                        replica_rank=0, node_rank=0, nnodes=1, cuda_visible_devices="0", base_gpu_id=0)
    await server.launch_server()
    from softgrpo.verl_plugin.agent_loop import SoftSingleTurnAgentLoop

    loop = SoftSingleTurnAgentLoop(trainer_config=DictConfigWrap(config), server_manager=LocalServerManager(server),
                                   tokenizer=AutoTokenizer.from_pretrained(tok_path), processor=None,
                                   dataset_cls=None, data_config=DictConfigWrap(config.data), hf_model_type="qwen2")
    params = dict(temperature=rollout.temperature, top_p=rollout.top_p, top_k=rollout.top_k, repetition_penalty=1.0,
                  logprobs=rollout.calculate_log_probs)  # as verl's AgentLoopWorker builds them
    out = await loop.run(params, raw_prompt=PROMPT)
    return out.as_dict(), server


def _run(config, tok: Path, monkeypatch):
    manager = StandInTokenizerManager(vocab_size=int(config_vocab(config)))
    with sglang_standin(manager):
        result, server = asyncio.run(_drive(config, tok, manager, monkeypatch))
    return result, manager


def config_vocab(config) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(config.actor_rollout_ref.model.path).vocab_size


def test_soft_arm_starts_the_plugin_and_ships_the_trace(tiny, clean_env, monkeypatch):
    model, tok = tiny
    config = recipe_config("soft", model, tok)
    env = server_env(config)
    assert env.get("SOFTGRPO_SGLANG") == "require"  # point 4: the recipe switches the SGLang plug-in on
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result, manager = _run(config, tok, monkeypatch)
    soft_requests = [r for r in manager.requests if (r.sampling_params.get("custom_params") or {}).get("seed") is not None
                     and r.sampling_params["custom_params"].get("enable_soft_thinking")]
    assert soft_requests, "the soft arm must send soft requests"
    req = manager.requests[-1]
    tokens = response_tokens(req.input_ids, 6, config_vocab(config))
    p = len(result["prompts"])
    assert result["responses"].tolist() == tokens
    on = result["soft_on"][p:].tolist()
    assert on == [1] * N_SOFT + [0] * (len(tokens) - N_SOFT)  # the plug-in's rows, decoded by our glue
    assert result["soft_ids"][p, :3].tolist() == [tokens[0], tokens[0] + 1, tokens[0] + 2]
    assert result["soft_ids"].shape[1] == 5  # K = soft_thinking.max_topk, not the server's table width
    torch.testing.assert_close(result["rollout_log_probs"][:N_SOFT], torch.tensor([2.5, 2.0, 1.5]))
    assert float(result["soft_tau_g"]) == pytest.approx(0.1)


def test_grpo_arm_runs_discrete_requests_with_a_trace(tiny, clean_env, monkeypatch):
    model, tok = tiny
    config = recipe_config("grpo", model, tok)
    for key, value in server_env(config).items():
        monkeypatch.setenv(key, value)
    result, manager = _run(config, tok, monkeypatch)
    req = manager.requests[-1]
    assert not (req.sampling_params.get("custom_params") or {}).get("enable_soft_thinking")
    tokens = response_tokens(req.input_ids, 6, config_vocab(config))
    p = len(result["prompts"])
    assert result["responses"].tolist() == tokens  # point 5: discrete requests get a (discrete) trace
    assert result["soft_on"].sum() == 0
    assert result["soft_ids"][p:, 0].tolist() == tokens and result["soft_ids"][:, 1:].abs().sum() == 0
    torch.testing.assert_close(result["rollout_log_probs"], torch.tensor(discrete_logprobs(len(tokens))))
    # the discrete arm's sampling is stock SGLang's: verl's temperature / top_p / top_k reach SGLang unchanged
    rollout = config.actor_rollout_ref.rollout
    assert (req.sampling_params["temperature"], req.sampling_params["top_p"], req.sampling_params["top_k"]) == (
        rollout.temperature, rollout.top_p, rollout.top_k)


def test_server_without_the_plugin_stops_at_launch(tiny, clean_env, monkeypatch):
    """Negative control of point 4: the soft arm's server with SOFTGRPO_SGLANG off fails before any rollout."""
    model, tok = tiny
    config = recipe_config("soft", model, tok)
    for key, value in server_env(config).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOFTGRPO_SGLANG", "off")
    manager = StandInTokenizerManager(vocab_size=config_vocab(config))
    with sglang_standin(manager), pytest.raises(SoftGRPOError, match="SOFTGRPO_SGLANG"):
        asyncio.run(_drive(config, tok, manager, monkeypatch))
    assert not [r for r in manager.requests if not str(r.rid).startswith("softgrpo-selftest")]


def test_server_wide_settings_follow_the_soft_thinking_section(tiny, clean_env, monkeypatch):
    """SOFTGRPO_SGLANG_CONFIG is derived from soft_thinking: a non-default server-wide key reaches the server
    (a hand-mirrored or missing value is refused by the plug-in's parser, the negative control)."""
    model, tok = tiny
    config = recipe_config("soft", model, tok, "soft_thinking.gumbel_clamp=[-2.0,4.0]")
    env = server_env(config)
    assert '"gumbel_clamp": [-2.0, 4.0]' in env["SOFTGRPO_SGLANG_CONFIG"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result, _ = _run(config, tok, monkeypatch)
    assert int(result["soft_on"].sum()) == N_SOFT
    monkeypatch.setenv("SOFTGRPO_SGLANG_CONFIG", "{}")  # the server's defaults no longer match the run's
    with pytest.raises(Exception, match="gumbel_clamp"):
        _run(config, tok, monkeypatch)
