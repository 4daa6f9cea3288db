"""Registrations are idempotent and by name; the start-up check names what is missing."""

from __future__ import annotations

import pytest


@pytest.fixture
def registered(monkeypatch):
    import verl.workers.engine_workers as engine_workers

    from softgrpo.verl_plugin import registration as reg
    from softgrpo.verl_plugin.cpu_runtime import patch_process_group_backend

    monkeypatch.setattr(engine_workers, "initialize_global_process_group_ray",
                        engine_workers.initialize_global_process_group_ray)  # restored after the test
    patch_process_group_backend()
    reg.register_platform()
    reg.register_engines(cpu=True)
    reg.register_rollouts()
    reg.register_agent_loop()
    reg.register_trainer_mode()
    return reg


def test_registering_twice_changes_nothing(registered):
    from verl.workers.engine.base import EngineRegistry

    reg = registered
    table = {k: dict(v) for k, v in EngineRegistry._engines["language_model"].items()}
    reg.register_engines(cpu=True)
    reg.register_rollouts()
    reg.register_agent_loop()
    reg.register_trainer_mode()
    assert {k: dict(v) for k, v in EngineRegistry._engines["language_model"].items()} == table
    assert reg.missing_registrations(cpu=True) == []
    reg.check_registries(cpu=True)
    assert EngineRegistry._engines["language_model"]["fsdp2"][("cpu", "softgrpo")].__name__ == "SoftFSDPEngineWithLMHeadCPU"


def test_missing_and_foreign_keys_are_errors(registered, monkeypatch):
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    from verl.workers.engine.base import EngineRegistry

    reg = registered
    monkeypatch.delitem(_agent_loop_registry, reg.AGENT_LOOP_NAME)
    with pytest.raises(reg.PluginRegistrationError, match=r"missing: agent loop 'soft_single_turn'"):
        reg.check_registries(cpu=True)

    class Foreign:
        pass

    monkeypatch.setitem(EngineRegistry._engines["language_model"]["fsdp"], ("cuda", "softgrpo"), Foreign)
    with pytest.raises(reg.PluginRegistrationError, match=r"holds .*Foreign"):
        reg.register_engines(cpu=False)
