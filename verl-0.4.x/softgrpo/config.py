"""Trainer configuration: OmegaConf/Hydra YAML with verl's key names, checked before any work.

The YAML under ``configs/`` has the same layout as a verl PPO config where a key exists there
(``data.train_batch_size``, ``actor_rollout_ref.rollout.n``, ``actor_rollout_ref.actor.optim.lr``,
``actor_rollout_ref.actor.kl_loss_coef``, ...), plus one ``soft_thinking`` section that maps 1:1
to :class:`soft_thinking.core.config.SoftThinkingConfig`. So a config carries over to the verl path.

:func:`load_config` merges a YAML file with dotted overrides (``key=value``), rejects unknown
keys, and returns a :class:`TrainConfig` whose ``validate()`` names the offending key on error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from soft_thinking.core.config import ConfigError, SoftThinkingConfig
from soft_thinking.core.grpo import KL_PENALTY_KINDS, LOSS_AGG_MODES
from softgrpo.input_checks import check_data_spec, check_device
from softgrpo.schema import build

ARMS = ("grpo", "softgrpo")
LOGGERS = ("console", "jsonl", "tensorboard", "wandb")
DTYPES = ("float32", "bfloat16", "float16")
#: The allowed values of the enum-like keys, added to a type error of those keys.
ENUM_HINTS = {
    "trainer.arm": f"one of {ARMS}",
    "trainer.device": "'cpu', 'cuda' or 'cuda:N'",
    "trainer.resume_mode": "'auto' or 'disable'",
    "trainer.logger": f"names from {LOGGERS}",
    "actor_rollout_ref.model.dtype": f"one of {DTYPES}",
    "actor_rollout_ref.actor.loss_agg_mode": f"one of {LOSS_AGG_MODES}",
    "actor_rollout_ref.actor.kl_loss_type": f"one of {KL_PENALTY_KINDS}",
    "actor_rollout_ref.actor.optim.lr_scheduler": "'constant' or 'cosine'",
    "algorithm.adv_estimator": "'grpo'",
}
MAX_TIMEOUT_S = 86400.0  # a day: larger values overflow the grader's pipe poll
MAX_WORKERS = 256
MAX_THREADS = 1024


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config key {key}={value!r} is invalid: allowed {allowed}")


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_scheduler: str = "constant"  # constant | cosine


@dataclass
class ActorConfig:
    optim: OptimConfig = field(default_factory=OptimConfig)
    ppo_mini_batch_size: int = 32  # prompts per mini-batch (verl semantics)
    ppo_micro_batch_size: int = 16  # sequences per forward/backward
    ppo_epochs: int = 1
    clip_ratio: float = 0.2
    clip_ratio_low: float | None = None
    clip_ratio_high: float | None = None
    clip_ratio_c: float = 3.0
    loss_agg_mode: str = "token-mean"
    use_kl_loss: bool = True
    kl_loss_coef: float = 0.001
    kl_loss_type: str = "low_var_kl"
    entropy_coeff: float = 0.0
    grad_clip: float = 1.0


@dataclass
class ValKwargs:
    """Validation sampling, verl's ``actor_rollout_ref.rollout.val_kwargs`` (same keys, same defaults:
    greedy, one sample). ``do_sample: false`` means greedy (T=0, no filters, n=1) whatever the other
    keys say; ``top_k`` 0 or -1 is off. The paper validates at T=0.6, top-p 0.95, top-k 5 (spec §5)."""

    top_k: int = -1
    top_p: float = 1.0
    temperature: float = 0.0
    n: int = 1
    do_sample: bool = False


@dataclass
class RolloutConfig:
    """Rollout sampling (verl's ``actor_rollout_ref.rollout`` keys), plus ``compile_step``: the reference engine
    runs its per-step sampling through ``torch.compile`` (one graph per batch bucket; ~1.6x faster decoding of the
    tiny model on CPU, ``bench/decode.py --compile-step``, but ~30 s of compiling per process: the quickstart's 250
    steps do not pay it back). Inductor may reorder float sums: traces match the eager step to ~1e-6 (tokens equal
    in ``tests/engines/test_hf_engine.py``), not bit for bit; false (the default) is the eager path."""

    n: int = 8
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 5
    min_p: float = 0.0
    val_kwargs: ValKwargs = field(default_factory=ValKwargs)
    compile_step: bool = False


@dataclass
class ModelConfig:
    path: str = "tiny-qwen2"
    dtype: str = "float32"
    trust_remote_code: bool = False


@dataclass
class ActorRolloutRefConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)


@dataclass
class DataConfig:
    train_files: str | None = None  # JSONL with prompt/answer, or "builtin:arithmetic"
    val_files: str | list[str] | None = None  # one source or a list (verl: several validation sets)
    train_size: int = 4000  # rows generated for builtin tasks
    val_size: int = 200
    prompt_key: str = "prompt"
    answer_key: str = "answer"
    data_source: str = "arithmetic"
    train_batch_size: int = 64  # prompts per step
    max_prompt_length: int = 1024
    max_response_length: int = 8192
    shuffle: bool = True
    apply_chat_template: bool = True


@dataclass
class AlgorithmConfig:
    adv_estimator: str = "grpo"
    norm_adv_by_std_in_grpo: bool = True
    use_kl_in_reward: bool = False


@dataclass
class RewardConfig:
    path: str | None = None  # dotted path "pkg.module:fn" or "pkg.module.fn" (verl custom_reward_function)
    name: str = "compute_score"
    timeout_s: float = 10.0
    workers: int = 2
    # default reward only: a completion with no </think> scores 0 (thinking cut at the token budget),
    # for models that have a think-end; false grades the whole completion
    require_think_end: bool = True


@dataclass
class TrainerSection:
    project_name: str = "softgrpo"
    experiment_name: str = "run"
    arm: str = "softgrpo"
    total_training_steps: int = 100
    stop_after_steps: int | None = None  # end this invocation early (resume continues)
    save_freq: int = 50
    test_freq: int = 0  # validate every N steps and before training (0 = never); needs data.val_files
    default_local_dir: str | None = None  # None: runs/train/<arm>, one folder per arm
    resume_mode: str = "auto"  # auto | disable
    resume_allow_config_change: bool = False  # resume even if arm/model/data/optimizer keys changed
    keep_checkpoints: int = 2
    logger: list[str] = field(default_factory=lambda: ["console", "jsonl"])
    seed: int = 0
    device: str = "cpu"
    num_threads: int = 1
    progress: bool = True


@dataclass
class TrainConfig:
    trainer: TrainerSection = field(default_factory=TrainerSection)
    data: DataConfig = field(default_factory=DataConfig)
    actor_rollout_ref: ActorRolloutRefConfig = field(default_factory=ActorRolloutRefConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    custom_reward_function: RewardConfig = field(default_factory=RewardConfig)
    soft_thinking: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        """``trainer.default_local_dir``, or ``runs/train/<arm>`` when unset."""
        t = self.trainer
        return Path(t.default_local_dir) if t.default_local_dir else Path("runs") / "train" / t.arm

    @property
    def actor(self) -> ActorConfig:
        return self.actor_rollout_ref.actor

    @property
    def rollout(self) -> RolloutConfig:
        return self.actor_rollout_ref.rollout

    def soft_thinking_config(self, think_end_token_ids: tuple[int, ...] = ()) -> SoftThinkingConfig:
        """The rollout's :class:`SoftThinkingConfig`: the ``soft_thinking`` section, the rollout's
        sampling keys, the arm (``grpo`` = discrete) and the tokenizer's think-end ids."""
        st = dict(self.soft_thinking)
        r = self.rollout
        for key in ("temperature", "top_p", "top_k", "min_p"):
            if key in st and st[key] != getattr(r, key):
                _fail(f"soft_thinking.{key}", st[key], f"the value of actor_rollout_ref.rollout.{key} ({getattr(r, key)!r}) or unset")
            st[key] = getattr(r, key)
        soft = self.trainer.arm == "softgrpo"
        if "enable_soft_thinking" in st and st["enable_soft_thinking"] is not soft:  # the arm decides
            _fail("soft_thinking.enable_soft_thinking", st["enable_soft_thinking"],
                  f"unset or {soft} (trainer.arm={self.trainer.arm!r} decides soft or discrete rollouts)")
        st["enable_soft_thinking"] = soft
        if think_end_token_ids and not st.get("soft_until_eos", False):
            st.setdefault("think_end_token_ids", tuple(think_end_token_ids))
        try:
            cfg = SoftThinkingConfig.from_flags(st)
        except TypeError as err:
            raise ConfigError(f"soft_thinking: {err}") from err
        return cfg.validate(for_training=True)

    def val_soft_thinking_config(self, rollout_cfg: SoftThinkingConfig) -> tuple[SoftThinkingConfig, int]:
        """Validation's sampling (``val_kwargs``) on top of the rollout's config, and samples per problem."""
        vk = self.rollout.val_kwargs
        answer = dict(after_thinking_temperature=None, after_thinking_top_p=None, after_thinking_top_k=None,
                      after_thinking_min_p=None)
        if not vk.do_sample:  # verl: greedy, one sample
            return rollout_cfg.replace(temperature=0.0, top_p=1.0, top_k=-1, min_p=0.0, **answer).validate(), 1
        top_k = -1 if vk.top_k in (0, -1) else vk.top_k
        cfg = rollout_cfg.replace(temperature=vk.temperature, top_p=vk.top_p, top_k=top_k, **answer)
        try:
            return cfg.validate(), vk.n
        except ConfigError as err:
            msg = str(err).replace("SoftThinkingConfig.", "actor_rollout_ref.rollout.val_kwargs.")
            raise ConfigError(msg) from err

    def loss_config(self):
        from soft_thinking.core.grpo import PPOLossConfig

        a = self.actor
        return PPOLossConfig(
            clip_ratio_low=a.clip_ratio if a.clip_ratio_low is None else a.clip_ratio_low,
            clip_ratio_high=a.clip_ratio if a.clip_ratio_high is None else a.clip_ratio_high,
            clip_ratio_c=a.clip_ratio_c,
            loss_agg_mode=a.loss_agg_mode,
            kl_loss_coef=a.kl_loss_coef if a.use_kl_loss else 0.0,
            kl_loss_type=a.kl_loss_type,
            entropy_coeff=a.entropy_coeff,
        ).validate()

    def validate(self) -> TrainConfig:
        """Every check names the full key; nothing is loaded before this passes."""
        t, d, a, r = self.trainer, self.data, self.actor, self.rollout
        if t.arm not in ARMS:
            _fail("trainer.arm", t.arm, f"one of {ARMS}")
        _positive_int("trainer.total_training_steps", t.total_training_steps)
        if t.stop_after_steps is not None:
            _positive_int("trainer.stop_after_steps", t.stop_after_steps)
        _nonneg_int("trainer.save_freq", t.save_freq)
        _nonneg_int("trainer.test_freq", t.test_freq)
        _positive_int("trainer.num_threads", t.num_threads)
        _positive_int("trainer.keep_checkpoints", t.keep_checkpoints)
        if t.resume_mode not in ("auto", "disable"):
            _fail("trainer.resume_mode", t.resume_mode, "'auto' or 'disable'")
        for lg in t.logger:
            if lg not in LOGGERS:
                _fail("trainer.logger", lg, f"a list of {LOGGERS}")
        check_device(t.device)
        if not 0 <= t.seed < 2**63:
            _fail("trainer.seed", t.seed, "an integer in [0, 2**63)")
        if t.num_threads > MAX_THREADS:
            _fail("trainer.num_threads", t.num_threads, f"an integer in [1, {MAX_THREADS}]")
        _positive_int("data.train_batch_size", d.train_batch_size)
        _positive_int("data.max_prompt_length", d.max_prompt_length)
        _positive_int("data.max_response_length", d.max_response_length)
        _positive_int("data.train_size", d.train_size)
        _positive_int("data.val_size", d.val_size)
        if t.test_freq and d.val_files is None:
            _fail("trainer.test_freq", t.test_freq, "0 when data.val_files is not set")
        if d.train_files is None:
            _fail("data.train_files", d.train_files, "a JSONL/parquet path or 'builtin:arithmetic'")
        check_data_spec("data.train_files", d.train_files)
        for i, spec in enumerate([d.val_files] if isinstance(d.val_files, str) else list(d.val_files or [])):
            check_data_spec("data.val_files" if isinstance(d.val_files, str) else f"data.val_files[{i}]", spec)
        for key in ("prompt_key", "answer_key", "data_source"):
            if not getattr(d, key).strip():
                _fail(f"data.{key}", getattr(d, key), "a non-empty string")
        if not self.actor_rollout_ref.model.path.strip():
            _fail("actor_rollout_ref.model.path", self.actor_rollout_ref.model.path, "a model folder or a tiny-model name")
        _positive_int("actor_rollout_ref.rollout.n", r.n)
        if self.algorithm.adv_estimator == "grpo" and r.n < 2:
            _fail("actor_rollout_ref.rollout.n", r.n, ">= 2 for GRPO (advantages are relative to a group)")
        if self.algorithm.adv_estimator != "grpo":
            _fail("algorithm.adv_estimator", self.algorithm.adv_estimator, "'grpo'")
        if self.algorithm.use_kl_in_reward:
            _fail("algorithm.use_kl_in_reward", True, "False (the recipe puts the KL in the loss)")
        _positive_int("actor_rollout_ref.actor.ppo_mini_batch_size", a.ppo_mini_batch_size)
        _positive_int("actor_rollout_ref.actor.ppo_micro_batch_size", a.ppo_micro_batch_size)
        _positive_int("actor_rollout_ref.actor.ppo_epochs", a.ppo_epochs)
        if d.train_batch_size % a.ppo_mini_batch_size:
            _fail(
                "actor_rollout_ref.actor.ppo_mini_batch_size", a.ppo_mini_batch_size,
                f"a divisor of data.train_batch_size={d.train_batch_size}",
            )
        seqs_per_mini = a.ppo_mini_batch_size * r.n
        if seqs_per_mini % a.ppo_micro_batch_size:
            _fail(
                "actor_rollout_ref.actor.ppo_micro_batch_size", a.ppo_micro_batch_size,
                f"a divisor of ppo_mini_batch_size * rollout.n = {seqs_per_mini}",
            )
        o = a.optim
        if not (math.isfinite(o.lr) and o.lr > 0):
            _fail("actor_rollout_ref.actor.optim.lr", o.lr, "a finite number > 0")
        if not all(0.0 <= b < 1.0 for b in o.betas):  # AdamW's own rule, checked before the model loads
            _fail("actor_rollout_ref.actor.optim.betas", list(o.betas), "two numbers in [0, 1)")
        if not (math.isfinite(o.weight_decay) and o.weight_decay >= 0):
            _fail("actor_rollout_ref.actor.optim.weight_decay", o.weight_decay, "a number >= 0")
        _nonneg_int("actor_rollout_ref.actor.optim.warmup_steps", o.warmup_steps)
        if o.lr_scheduler not in ("constant", "cosine"):
            _fail("actor_rollout_ref.actor.optim.lr_scheduler", o.lr_scheduler, "'constant' or 'cosine'")
        if not (math.isfinite(a.grad_clip) and a.grad_clip > 0):
            _fail("actor_rollout_ref.actor.grad_clip", a.grad_clip, "a number > 0")
        if a.loss_agg_mode not in LOSS_AGG_MODES:
            _fail("actor_rollout_ref.actor.loss_agg_mode", a.loss_agg_mode, f"one of {LOSS_AGG_MODES}")
        if a.kl_loss_type.removesuffix("+") not in KL_PENALTY_KINDS:
            _fail("actor_rollout_ref.actor.kl_loss_type", a.kl_loss_type, f"one of {KL_PENALTY_KINDS}")
        if self.actor_rollout_ref.model.dtype not in DTYPES:
            _fail("actor_rollout_ref.model.dtype", self.actor_rollout_ref.model.dtype, f"one of {DTYPES}")
        rf = self.custom_reward_function
        if not 0 < rf.timeout_s <= MAX_TIMEOUT_S:
            _fail("custom_reward_function.timeout_s", rf.timeout_s, f"a number of seconds in (0, {MAX_TIMEOUT_S}]")
        if not 1 <= rf.workers <= MAX_WORKERS:
            _fail("custom_reward_function.workers", rf.workers, f"an integer in [1, {MAX_WORKERS}]")
        if rf.path is not None and not rf.path.strip():
            _fail("custom_reward_function.path", rf.path, "null or a module path / .py file")
        if not rf.name.isidentifier():
            _fail("custom_reward_function.name", rf.name, "a Python identifier (the function's name)")
        if not (0 < a.clip_ratio < 1):
            _fail("actor_rollout_ref.actor.clip_ratio", a.clip_ratio, "a number in (0, 1)")
        try:
            self.loss_config()
        except ConfigError as err:
            raise ConfigError(f"actor_rollout_ref.actor: {err}") from err
        try:
            st = self.soft_thinking_config(think_end_token_ids=(0,))
        except ConfigError as err:
            raise ConfigError(f"soft_thinking: {err}") from err
        _positive_int("actor_rollout_ref.rollout.val_kwargs.n", r.val_kwargs.n)
        self.val_soft_thinking_config(st)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _positive_int(key: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        _fail(key, v, "an integer >= 1")


def _nonneg_int(key: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        _fail(key, v, "an integer >= 0")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file (optional) + ``key=value`` overrides -> validated :class:`TrainConfig`."""
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    if path is not None and not Path(path).is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        base: DictConfig = OmegaConf.load(str(path)) if path is not None else OmegaConf.create({})
    except (YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"--config {path}: not a valid YAML mapping ({err})") from err
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} is invalid: allowed key=value (a dotted key, e.g. trainer.arm=grpo)")
    try:
        if overrides:
            base = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
        container = OmegaConf.to_container(base, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"config overrides {list(overrides or [])}: {err}") from err
    return from_container(container)


def from_container(container: Any) -> TrainConfig:
    return build(TrainConfig, container, "", ENUM_HINTS).validate()
