"""The command line of ``python -m softgrpo.main_ppo``: parse, compose and type-check, before Ray starts.

Every failure is a :class:`CLIError` (one ``error:`` line, exit 2 in ``main_ppo``) raised before anything
runs or is written:

* the arguments: ``--config-name=<file of configs/verl>`` (or ``--config-name X`` / ``-cn X``) and Hydra
  overrides; ``hydra.*`` overrides are refused (the entry point composes with Hydra's compose API and
  writes no Hydra output folder, so they would do nothing);
* composition: unknown keys (Hydra's struct mode), override syntax, a missing config file;
* types (:func:`check_types`): every value is compared with the same key of the config composed
  without the user's overrides -- a number where the default is a number (``optim.lr=abc`` fails), a
  bool for a bool, a list for a list with the elements' kind (``trainer.logger=console`` and
  ``soft_thinking.gumbel_clamp=[a,b]`` fail), a mapping for a mapping; keys whose default is null or
  a string are not typed here;
* values (:func:`check_values`): the cluster and batch sizes, the optimizer's ``lr``/``betas``, the
  logger names (``verl.utils.tracking.Tracking.supported_backend``) and the reward function's keyword
  arguments.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from soft_thinking.errors import SoftGRPOError

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "verl"
NOT_LAUNCHABLE = ("softgrpo_base",)  # the shared body (no hydra search path of its own)
POSITIVE_INTS = ("trainer.nnodes", "trainer.n_gpus_per_node", "data.train_batch_size", "actor_rollout_ref.rollout.n",
                 "actor_rollout_ref.actor.ppo_mini_batch_size")
FIRST = ("soft_thinking",)  # rollout.custom.soft_thinking is an interpolation of it
REWARD_SECTIONS = ("reward.custom_reward_function", "custom_reward_function")
REWARD_KEYS = ("path", "name", "reward_kwargs")


class CLIError(SoftGRPOError):
    """A bad command line or config value of ``softgrpo.main_ppo``."""


def config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem not in NOT_LAUNCHABLE)


def parse_args(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``(config_name, overrides)``; the default config is ``softgrpo_trainer``."""
    name, overrides = "softgrpo_trainer", []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        elif arg in ("--config-name", "-cn"):
            if not args:
                raise CLIError(f"{arg} needs a value: allowed {config_names()}")
            name = args.pop(0)
        elif arg.startswith("-"):
            raise CLIError(f"unknown option {arg!r}: allowed --config-name=<{'|'.join(config_names())}> "
                           "followed by key=value overrides")
        elif arg.lstrip("+~").startswith("hydra."):
            raise CLIError(f"{arg!r}: hydra.* overrides are not allowed (softgrpo.main_ppo writes no Hydra output "
                           "folder; the recipe scripts write under RUN_DIR)")
        else:
            overrides.append(arg)
    if name not in config_names():
        raise CLIError(f"--config-name={name!r} is invalid: allowed {config_names()} (files of {CONFIG_DIR})")
    return name, overrides


def _one_line(err: BaseException) -> str:
    parts = []
    for e in (err, err.__cause__):
        if e is None:
            continue
        parts += [line.strip() for line in str(e).splitlines()
                  if line.strip() and not line.strip().startswith(("full_key:", "object_type=", "See https://"))]
    return "; ".join(parts)


def compose_config(name: str, overrides: Sequence[str]) -> DictConfig:
    """Hydra composition (struct mode: unknown keys fail) with every Hydra error as one line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return compose(config_name=name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise CLIError(_one_line(err)) from None


def _plain(config: DictConfig, where: str) -> dict[str, Any]:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as err:
        raise CLIError(f"{where}: {_one_line(err)}") from None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _kind(x: Any) -> str | None:
    if isinstance(x, bool):
        return "bool (true/false)"
    if _is_number(x):
        return "number"
    return None


def _walk(ref: Any, value: Any, key: str) -> None:
    if isinstance(ref, dict):
        if not isinstance(value, dict):
            raise CLIError(f"{key}={value!r} is invalid: allowed a mapping (the default is {ref!r})")
        for k, v in value.items():
            if k in ref:
                _walk(ref[k], v, f"{key}.{k}" if key else str(k))
    elif isinstance(ref, list):
        if not isinstance(value, list):
            raise CLIError(f"{key}={value!r} is invalid: allowed a list such as {ref!r} (write {key}=[...])")
        kinds = {_kind(x) for x in ref}
        if len(kinds) == 1 and None not in kinds:
            kind = kinds.pop()
            for x in value:
                if _kind(x) != kind:
                    raise CLIError(f"{key}={value!r} is invalid: allowed a list of elements that are each a {kind}, "
                                   f"such as {ref!r}")
    else:
        kind = _kind(ref)
        if kind is not None and _kind(value) != kind and value is not None:
            raise CLIError(f"{key}={value!r} is invalid: allowed a {kind} (the default is {ref!r})")


def check_types(config: DictConfig, name: str) -> None:
    """Every value has the kind of the same key in the config composed without overrides (module doc)."""
    reference = _plain(compose_config(name, []), "the default config")
    plain = _plain(config, "the config")
    first = {k: plain[k] for k in FIRST if k in plain}  # reported under the user's key, not its interpolated copy
    _walk(reference, {**first, **plain}, "")


def _get(plain: dict[str, Any], key: str) -> Any:
    node: Any = plain
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_values(config: DictConfig) -> None:
    """Ranges and names verl checks late or never (module doc)."""
    plain = _plain(config, "the config")
    for key in POSITIVE_INTS:
        v = _get(plain, key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise CLIError(f"{key}={v!r} is invalid: allowed an integer >= 1")
    lr = _get(plain, "actor_rollout_ref.actor.optim.lr")
    if not (_is_number(lr) and math.isfinite(lr) and lr > 0):
        raise CLIError(f"actor_rollout_ref.actor.optim.lr={lr!r} is invalid: allowed a finite number > 0")
    betas = _get(plain, "actor_rollout_ref.actor.optim.betas")
    if betas is not None and not (isinstance(betas, list) and len(betas) == 2
                                  and all(_is_number(b) and 0 <= b < 1 for b in betas)):
        raise CLIError(f"actor_rollout_ref.actor.optim.betas={betas!r} is invalid: allowed two numbers in [0, 1)")
    _check_logger(_get(plain, "trainer.logger"))
    for section in REWARD_SECTIONS:
        _check_reward(_get(plain, section), section)


def _check_logger(logger: Any) -> None:
    from verl.utils.tracking import Tracking

    allowed = list(Tracking.supported_backend)
    if not isinstance(logger, list) or not all(isinstance(x, str) and x in allowed for x in logger):
        raise CLIError(f"trainer.logger={logger!r} is invalid: allowed a list of {allowed} (e.g. [console,file])")


def _check_reward(section: Any, where: str) -> None:
    if section is None:
        return
    unknown = sorted(set(section) - set(REWARD_KEYS))
    if unknown:
        raise CLIError(f"{where}.{unknown[0]} is not a key of {where}: allowed {list(REWARD_KEYS)}")
    if section.get("path") not in ("pkg://softgrpo.rewards", "softgrpo.rewards"):
        return
    from softgrpo import rewards

    fn = getattr(rewards, section.get("name") or "compute_score", None)
    if fn is None:
        raise CLIError(f"{where}.name={section.get('name')!r} is invalid: allowed 'compute_score'")
    params = inspect.signature(fn).parameters
    allowed = [p for p, spec in params.items() if spec.default is not inspect.Parameter.empty and p != "extra_info"]
    for key in sorted(section.get("reward_kwargs") or {}):
        if key not in allowed:
            raise CLIError(f"{where}.reward_kwargs.{key} is not an argument of softgrpo.rewards.{fn.__name__}: "
                           f"allowed {allowed}")
