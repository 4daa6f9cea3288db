"""The SGLang side of the plug-in. CPU: the trace codec adapter and the registration of the loader
(verl's sglang loader runs first); the server classes only where ``sglang`` imports. GPU runs are
marked ``gpu`` and skip without CUDA."""

from __future__ import annotations

import os

import pytest
import torch

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.trace import SoftTrace
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.sglang_trace import decode_sglang_trace, sglang_soft_params


def _trace() -> SoftTrace:
    return SoftTrace(tokens=torch.tensor([7, 5, 9]), ids=torch.tensor([[7, 8], [5, 0], [9, 0]], dtype=torch.int32),
                     q=torch.tensor([[0.5, -1.0], [0.0, 0.0], [0.0, 0.0]]), soft=torch.tensor([True, False, False]),
                     logprobs=torch.tensor([-0.7, -1.2, -0.1]), noise="gumbel", tau_g=0.1, temperature=1.0,
                     answer_temperature=1.0, answer_start=2).validate()


def test_trace_codec_roundtrip_and_errors():
    t = _trace()
    assert decode_sglang_trace(t.to_bytes()).equal(t)
    with pytest.raises(SoftGRPOError, match="allowed bytes"):
        decode_sglang_trace({"tokens": [1]})
    with pytest.raises(SoftGRPOError, match="not a valid soft trace"):
        decode_sglang_trace(b"not an npz archive")
    params = sglang_soft_params({"temperature": 1.0, "custom_params": {"x": 1}}, SoftThinkingConfig(max_topk=3))
    assert params["custom_params"]["x"] == 1 and params["custom_params"]["softgrpo"]["max_topk"] == 3


def test_sglang_loader_is_registered_and_calls_verls_first(monkeypatch):
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from softgrpo.verl_plugin.registration import register_rollouts

    calls = []
    monkeypatch.setitem(RolloutReplicaRegistry._registry, "sglang", lambda: calls.append("verl") or None)
    register_rollouts()
    loader = RolloutReplicaRegistry._registry["sglang"]
    assert getattr(loader, "_softgrpo_soft_sglang", False)
    register_rollouts()  # idempotent: not wrapped twice
    assert RolloutReplicaRegistry._registry["sglang"] is loader
    try:
        import sglang  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):
            loader()
        assert calls == ["verl"]  # verl's loader ran before ours needed sglang
    else:
        assert loader().__name__ == "SoftSGLangReplica" and calls == ["verl"]


def test_server_classes_where_sglang_imports():
    pytest.importorskip("sglang")
    from verl.workers.rollout.sglang_rollout.async_sglang_server import SGLangHttpServer, SGLangReplica

    from softgrpo.verl_plugin.sglang_rollout import SoftSGLangHttpServer, SoftSGLangReplica

    assert issubclass(SoftSGLangHttpServer, SGLangHttpServer) and issubclass(SoftSGLangReplica, SGLangReplica)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_two_steps_sglang_both_arms(tmp_path):
    """2 steps per arm on one GPU with SGLang: parity <= 0.01 in bf16 (spec §3)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("sglang")
    from verl_assets import make_model, make_parquets
    from verl_run import run_verl

    model, tok = make_model(tmp_path, tie_word_embeddings=False)
    train, val = make_parquets(tmp_path)
    model_path = os.environ.get("SOFTGRPO_GPU_TEST_MODEL", str(model))
    common = [f"actor_rollout_ref.model.path={model_path}", f"data.train_files={train}", f"data.val_files={val}",
              "trainer.n_gpus_per_node=1", "trainer.total_training_steps=2", "trainer.val_before_train=false",
              "data.train_batch_size=4", "data.max_prompt_length=64", "data.max_response_length=64",
              "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.rollout.n=4",
              "actor_rollout_ref.rollout.gpu_memory_utilization=0.4", "trainer.test_freq=-1", "trainer.save_freq=-1"]
    if "SOFTGRPO_GPU_TEST_MODEL" not in os.environ:
        common.append(f"actor_rollout_ref.model.tokenizer_path={tok}")
    for arm in ("true", "false"):
        r = run_verl("softgrpo.main_ppo", ["--config-name=softgrpo_trainer", *common,
                                           f"soft_thinking.enable_soft_thinking={arm}"], tmp_path / arm, {}, 900)
        assert r.rc == 0, r.tail()
        for s in r.steps:
            d = s["data"]
            assert d["softgrpo/replay_max_abs_dlogp_soft"] <= 0.01 and d["softgrpo/replay_max_abs_dlogp_discrete"] <= 0.01
