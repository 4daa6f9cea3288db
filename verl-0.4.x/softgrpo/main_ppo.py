"""SofT-GRPO on verl 0.9.1: verl's own ``main_ppo`` with the plug-in and the configs of ``configs/verl``::

    python -m softgrpo.main_ppo [--config-name=softgrpo_trainer|grpo_trainer|cpu_tiny] key=value ...

It is ``verl.trainer.main_ppo.main`` (the function under verl's ``@hydra.main``) after three steps:

1. the variables of ``ray_kwargs.ray_init.runtime_env.env_vars`` (``SOFTGRPO_VERL_PLUGIN``,
   ``VERL_ENGINE_VENDOR``, on CPU ``VERL_PLATFORM``) are set in this process too (unless already
   set), so the driver, a local Ray cluster and every remote node see the same ones;
2. the registrations run again with them (idempotent) and :func:`check_registries` fails loudly if a key
   is missing;
3. :func:`~softgrpo.verl_plugin.checks.check_config` validates the config (one ``error:`` line, exit 2).

verl's entry point works too, with the same config files:
``python -m verl.trainer.main_ppo --config-dir=configs/verl --config-name=softgrpo_trainer`` (the trainer
repeats check 3; the environment must then be set by the caller).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

os.environ.setdefault("SOFTGRPO_VERL_PLUGIN", "1")  # before Hydra imports verl to find its configs

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "verl"


def apply_env_vars(config: DictConfig) -> dict[str, str]:
    """Export the run's ``runtime_env.env_vars`` into this process (existing values win); return them."""
    env = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None) or {}
    env = {str(k): str(v) for k, v in OmegaConf.to_container(env, resolve=True).items()}
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return env


def prepare(config: DictConfig) -> None:
    """Steps 1-3 of the module doc (raises :class:`SoftGRPOError`)."""
    apply_env_vars(config)
    from softgrpo.verl_plugin.checks import SoftGRPOConfigError, check_config, engine_vendor_problem
    from softgrpo.verl_plugin.registration import check_registries, register_all

    register_all()
    check_registries()
    problem = engine_vendor_problem(check_config(config))
    if problem:
        raise SoftGRPOConfigError(problem)


@hydra.main(config_path=str(CONFIG_DIR), config_name="softgrpo_trainer", version_base=None)
def main(config: DictConfig) -> None:
    from soft_thinking.errors import SoftGRPOError

    try:
        prepare(config)
    except SoftGRPOError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    from verl.trainer.main_ppo import main as verl_main

    verl_main.__wrapped__(config)


if __name__ == "__main__":
    main()
