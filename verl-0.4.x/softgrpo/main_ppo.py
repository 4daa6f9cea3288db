"""SofT-GRPO on verl 0.9.1: verl's own ``main_ppo`` with the plug-in and the configs of ``configs/verl``::

    python -m softgrpo.main_ppo [--config-name=softgrpo_trainer|grpo_trainer|cpu_tiny] key=value ...

Before Ray starts and before anything is written (each failure: one ``error:`` line, exit 2):

1. :mod:`softgrpo.verl_plugin.cli` parses the arguments, composes the config with Hydra's compose API
   (struct mode: unknown keys fail) and checks the values' types and ranges. There is no Hydra run
   folder: nothing lands in ``outputs/``;
2. :func:`~softgrpo.verl_plugin.checks.check_config` validates the SofT-GRPO keys and the
   ``soft_thinking`` section;
3. :func:`~softgrpo.verl_plugin.launch.apply_launch_settings` fills the attention implementation (sdpa
   unless flash_attn imports) and, for SGLang rollouts, the plug-in's ``SOFTGRPO_SGLANG*`` variables
   into ``ray_kwargs.ray_init.runtime_env.env_vars``;
4. those variables (``SOFTGRPO_VERL_PLUGIN``, ``VERL_ENGINE_VENDOR``, on CPU ``VERL_PLATFORM``, ...)
   are set in this process too (unless already set), so the driver, a local Ray cluster and every
   remote node see the same ones; the registrations run again with them (idempotent) and
   :func:`check_registries` fails loudly if a key is missing.

With ``SOFTGRPO_DRY_RUN=1`` it stops here and prints the arguments (one per line) and, as ``#`` lines,
the Ray runtime env the job would get (what the recipe scripts' ``DRY_RUN=1`` shows). Otherwise it
runs ``verl.trainer.main_ppo.main`` (the function under verl's ``@hydra.main``). A SofT-GRPO
error raised later in a Ray actor (e.g. an SGLang server without the plug-in) also ends as one
``error:`` line and exit 2.

verl's entry point works too, with the same config files:
``python -m verl.trainer.main_ppo --config-dir=configs/verl --config-name=softgrpo_trainer`` (the trainer
repeats check 2; steps 1, 3 and 4 are then the caller's job).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

os.environ.setdefault("SOFTGRPO_VERL_PLUGIN", "1")  # before anything imports verl (the plug-in reads it)


def apply_env_vars(config: DictConfig) -> dict[str, str]:
    """Export the run's ``runtime_env.env_vars`` into this process (existing values win); return them."""
    env = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None) or {}
    env = {str(k): str(v) for k, v in OmegaConf.to_container(env, resolve=True).items()}
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return env


def prepare(config: DictConfig) -> None:
    """Steps 2-4 of the module doc (raises :class:`SoftGRPOError`)."""
    from softgrpo.verl_plugin.checks import SoftGRPOConfigError, check_config, engine_vendor_problem
    from softgrpo.verl_plugin.launch import apply_launch_settings
    from softgrpo.verl_plugin.registration import check_registries, register_all

    soft = check_config(config)
    apply_launch_settings(config, soft)
    apply_env_vars(config)
    register_all()
    check_registries()
    problem = engine_vendor_problem(soft)
    if problem:
        raise SoftGRPOConfigError(problem)


def load_config(argv: Sequence[str]) -> DictConfig:
    """Step 1 of the module doc: the composed, type-checked config."""
    from softgrpo.verl_plugin.cli import check_types, check_values, compose_config, parse_args

    name, overrides = parse_args(argv)
    config = compose_config(name, overrides)
    check_types(config, name)
    check_values(config)
    return config


def root_error(err: BaseException) -> BaseException:
    """The original exception behind Ray's wrappers (``RayTaskError.cause``, nested per actor hop)."""
    while getattr(err, "cause", None) is not None and err.cause is not err:
        err = err.cause
    return err


def print_dry_run(argv: Sequence[str], config: DictConfig) -> None:
    """The arguments, then the checked run's Ray ``runtime_env.env_vars`` and attention keys as ``#`` lines."""
    from softgrpo.verl_plugin.launch import ATTN_KEYS

    print("\n".join(argv))
    print("# ray_kwargs.ray_init.runtime_env.env_vars (every Ray worker and actor of the job):")
    env = OmegaConf.to_container(config.ray_kwargs.ray_init.runtime_env.env_vars, resolve=True)
    for key, value in env.items():
        print(f"# {key}={value}")
    for key in ATTN_KEYS:
        print(f"# {key}={OmegaConf.select(config, key)}")


def main(argv: Sequence[str] | None = None) -> int:
    from soft_thinking.errors import SoftGRPOError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if os.environ.get("SOFTGRPO_DRY_RUN", "") not in ("", "0", "1"):
            raise SoftGRPOError(f"SOFTGRPO_DRY_RUN={os.environ['SOFTGRPO_DRY_RUN']!r} is invalid: allowed 1, 0 or unset")
        config = load_config(argv)
        prepare(config)
        if os.environ.get("SOFTGRPO_DRY_RUN") == "1":
            print_dry_run(argv, config)
            return 0
        metrics = os.environ.get("VERL_FILE_LOGGER_PATH")
        if metrics:  # verl's file logger opens it without creating the folder
            Path(metrics).parent.mkdir(parents=True, exist_ok=True)
        from verl.trainer.main_ppo import main as verl_main

        verl_main.__wrapped__(config)
    except SoftGRPOError as err:
        print(f"error: {root_error(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
