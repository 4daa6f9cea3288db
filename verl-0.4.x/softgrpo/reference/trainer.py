"""The reference SofT-GRPO / GRPO trainer: one loop, two arms, pure PyTorch + transformers.

One training step (spec §4), top to bottom:

1. take ``data.train_batch_size`` prompts; roll out ``rollout.n`` samples each with the
   reference engine (soft thinking with noise for ``softgrpo``, discrete for ``grpo``);
2. score rewards (math-verify on the answer after the think-end, or a custom function);
3. group-normalized advantages ``A = (r - mean_group) / (std_group + 1e-6)``;
4. recompute the old log-probs (and the reference model's) from the traces: inputs rebuilt
   from ``ids``/``q`` with no gradient through them, scored by the core's ``mixed_logprobs``;
   the largest ``|old - rollout|`` is logged as the replay-parity metric;
5. PPO-clip updates over mini-batches (micro-batch gradient accumulation) with the k3 KL
   loss, AdamW and gradient clipping;
6. log metrics, checkpoint atomically every ``trainer.save_freq`` steps and at the end.

Old log-probs are computed on exactly the micro-batches (same rows, same padding) that the
update uses, so on the first mini-batch ``log pi - log pi_old`` is exactly 0.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from soft_thinking.core.config import ConfigError, SoftThinkingConfig
from soft_thinking.core.grpo import (
    broadcast_to_tokens,
    compute_actor_loss,
    compute_grpo_advantages,
    kl_penalty,
)
from soft_thinking.engines.hf.engine import SoftThinkingEngine, resolve_think_end
from soft_thinking.engines.hf.models import load_model, resolve_dtype
from soft_thinking.engines.hf.replay import replay_logprobs_entropy
from soft_thinking.runlock import hold_run_lock
from soft_thinking.text import THINK_END, apply_chat_template, derive_seed
from softgrpo.config import TrainConfig
from softgrpo.input_checks import check_device_available
from softgrpo.reference.batch import Rollout, rollout_metrics
from softgrpo.reference.checkpoint import (
    ResumeError,
    check_resume_config,
    find_resume_checkpoint,
    list_checkpoints,
    load_trainer_state,
    save_checkpoint,
    set_aside,
    set_rng_state,
)
from softgrpo.reference.data import Example, PromptSampler, load_examples
from softgrpo.reference.logger import MetricsLogger
from softgrpo.rewards import RewardScorer, make_scorer


def step_seed(seed: int, step: int) -> int:
    return derive_seed("softgrpo-step", seed, step)


class Trainer:
    """Build with a validated :class:`TrainConfig`; ``model``/``tokenizer`` may be passed in
    (the quickstart's warm-started model), else ``actor_rollout_ref.model.path`` is loaded."""

    def __init__(self, cfg: TrainConfig, model: Any = None, tokenizer: Any = None, scorer: RewardScorer | None = None) -> None:
        cfg.validate()
        check_device_available(cfg.trainer.device)
        self.cfg = cfg
        t = cfg.trainer
        torch.set_num_threads(t.num_threads)
        self.device = torch.device(t.device)
        self.out_dir = cfg.out_dir
        self.ckpt_dir = self.out_dir / "checkpoints"
        # everything that can be refused is checked before a model is loaded and before anything is
        # written: the resume checkpoint (newest that verifies), then the data, the model, the state
        self._resume_from, self._skipped = None, []
        if t.resume_mode == "auto":
            self._resume_from, self._skipped = find_resume_checkpoint(self.ckpt_dir)
        elif list_checkpoints(self.ckpt_dir):
            raise ResumeError(f"trainer.resume_mode=disable but {self.ckpt_dir} holds checkpoints of an earlier run "
                              "(a fresh run would rotate them away): use another trainer.default_local_dir, or "
                              "trainer.resume_mode=auto")
        for ckpt, reason in self._skipped:
            print(f"warning: skipping damaged checkpoint {ckpt}: {reason}", flush=True)
        if self._resume_from is not None:
            for diff in check_resume_config(self._resume_from, cfg.to_dict(), t.resume_allow_config_change):
                print(f"warning: resuming {self._resume_from} with a changed config: {diff}", flush=True)
        d = cfg.data
        self.train_examples = load_examples(d.train_files, "train", d.train_size, t.seed, d.prompt_key, d.answer_key)
        val_files = [d.val_files] if isinstance(d.val_files, str) else list(d.val_files or [])
        self.val_examples = [e for f in val_files
                             for e in load_examples(f, "test", d.val_size, t.seed, d.prompt_key, d.answer_key)]
        self.sampler = PromptSampler(self.train_examples, d.train_batch_size, t.seed, d.shuffle)
        if model is None:
            model, tokenizer = load_model(
                cfg.actor_rollout_ref.model.path, device=self.device, dtype=cfg.actor_rollout_ref.model.dtype,
                trust_remote_code=cfg.actor_rollout_ref.model.trust_remote_code,
            )
        elif tokenizer is None:
            raise ValueError("Trainer: a model was passed without its tokenizer")
        self.model = model.to(device=self.device, dtype=resolve_dtype(cfg.actor_rollout_ref.model.dtype))
        self.model.eval()  # no dropout anywhere: rollout, replay and update see the same function
        self.tokenizer = tokenizer
        self.ref_model = None
        if cfg.actor.use_kl_loss and cfg.actor.kl_loss_coef > 0:
            self.ref_model = copy.deepcopy(self.model).requires_grad_(False)
        self.engine = SoftThinkingEngine(self.model, tokenizer, device=self.device,
                                         compile_step=cfg.actor_rollout_ref.rollout.compile_step)
        think_end = resolve_think_end(tokenizer, THINK_END)
        self.st_cfg: SoftThinkingConfig = cfg.soft_thinking_config(think_end)
        self.st_cfg.validate(vocab_size=self.engine.vocab_size, for_training=True)
        self.lp_opts = self.st_cfg.logprob_options()
        self.loss_cfg = cfg.loss_config()
        o = cfg.actor.optim
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=o.lr, weight_decay=o.weight_decay,
            betas=tuple(o.betas),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        rf = cfg.custom_reward_function
        self._owns_scorer = scorer is None
        has_think_end = bool(self.st_cfg.think_end_token_ids)  # False with soft_until_eos: no think-end
        self.scorer = scorer if scorer is not None else make_scorer(
            rf.path, rf.name, rf.timeout_s, rf.workers, require_think_end=rf.require_think_end and has_think_end)
        self.global_step = 0
        self.grad_norm_skips = 0
        self.grading_failures = 0
        self._prompt_cache: dict[str, list[int]] = {}
        self._resume()
        # every input checked: from here on the run writes, holding its folder (one run per folder)
        self._lock = ExitStack()
        self._lock.enter_context(hold_run_lock(self.out_dir))
        for ckpt, _ in self._skipped:
            print(f"warning: {ckpt} kept as {set_aside(ckpt, 'damaged')}", flush=True)
        self.logger = MetricsLogger(self.out_dir, t.logger, t.project_name, t.experiment_name, cfg.to_dict(),
                                    resume_step=self.global_step)

    # ------------------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        o, total = self.cfg.actor.optim, self.cfg.trainer.total_training_steps
        if o.warmup_steps and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.lr_scheduler == "cosine":
            progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    def _resume(self) -> None:
        ckpt = self._resume_from
        if ckpt is None:
            return
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(ckpt / "model" / "model.safetensors"), device=str(self.device))
        except (OSError, SafetensorError) as exc:
            raise ResumeError(f"{ckpt / 'model' / 'model.safetensors'} cannot be loaded ({exc})") from exc
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = {"lm_head.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
        if unexpected or set(missing) - tied:
            raise ResumeError(f"checkpoint {ckpt} does not match the model: missing={missing} unexpected={unexpected}")
        ts = load_trainer_state(ckpt)
        try:
            self.optimizer.load_state_dict(ts["optimizer"])
            self.scheduler.load_state_dict(ts["scheduler"])
            set_rng_state(ts["rng"])
            self.sampler.load_state_dict(ts["sampler"])
            self.scorer.counts = Counter(ts.get("reward_counts", {}))
            self.global_step = int(ts["global_step"])
            self.grad_norm_skips = int(ts.get("grad_norm_skips", 0))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ResumeError(f"{ckpt / 'trainer_state.pt'} does not fit this run ({type(exc).__name__}: {exc})") from exc
        print(f"resumed from {ckpt} at step {self.global_step}", flush=True)

    def save(self) -> Path:
        return save_checkpoint(
            self.ckpt_dir, self.global_step, self.model, self.tokenizer, self.optimizer, self.scheduler,
            {"global_step": self.global_step, "sampler": self.sampler.state_dict(),
             "reward_counts": dict(self.scorer.counts), "grad_norm_skips": self.grad_norm_skips},
            self.cfg.to_dict(), keep=self.cfg.trainer.keep_checkpoints,
        )

    def prompt_ids(self, example: Example) -> list[int]:
        """The prompt's token ids (chat template applied when configured), tokenized once per
        distinct prompt; a prompt over ``data.max_prompt_length`` is an error naming the row."""
        ids = self._prompt_cache.get(example.prompt)
        if ids is None:
            text = (apply_chat_template(self.tokenizer, example.prompt) if self.cfg.data.apply_chat_template
                    else example.prompt)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            limit = self.cfg.data.max_prompt_length
            if len(ids) > limit:
                raise ConfigError(
                    f"data row {example.uid!r}: prompt has {len(ids)} tokens > data.max_prompt_length={limit}; "
                    "raise the limit or filter the dataset"
                )
            self._prompt_cache[example.prompt] = ids
        return ids

    # ------------------------------------------------------------------------------------------
    def rollout(self, examples: list[Example], step: int) -> Rollout:
        n = self.cfg.rollout.n
        prompts = [self.prompt_ids(e) for e in examples]
        samples = self.engine.generate(
            prompts, self.st_cfg, n=n,
            max_new_tokens=self.cfg.data.max_response_length, seed=step_seed(self.cfg.trainer.seed, step),
        )
        rewards = torch.tensor(self.score(examples, n, samples))
        groups = [i // n for i in range(len(samples))]
        adv = compute_grpo_advantages(
            rewards, groups, norm_adv_by_std_in_grpo=self.cfg.algorithm.norm_adv_by_std_in_grpo
        )
        return Rollout.collate(examples, samples, rewards, adv, self.device)

    def score(self, examples: list[Example], n: int, samples: list[Any]) -> list[float]:
        """Rewards of ``n`` samples per example (each row's data source picks the gold format)."""
        sources = [e.data_source or self.cfg.data.data_source for e in examples for _ in range(n)]
        scores = self.scorer(sources, [s.text for s in samples], [e.answer for e in examples for _ in range(n)])
        failures = getattr(self.scorer, "failures", [])
        self.grading_failures = len(failures)
        if failures:  # each failed sample scored 0; the run goes on and says so
            print(f"warning: step {self.global_step + 1}: {len(failures)} of {len(samples)} samples failed grading "
                  f"(scored 0): {failures[0][0]}: {failures[0][1][:200]}", flush=True)
        return scores

    def _micro_batches(self, size: int) -> list[slice]:
        micro = self.cfg.actor.ppo_micro_batch_size
        return [slice(i, min(i + micro, size)) for i in range(0, size, micro)]

    def _log_probs(self, model: Any, ro: Rollout, rows: slice, with_entropy: bool = False):
        prompts, batch = ro.rows(rows)
        return replay_logprobs_entropy(model, prompts, batch, self.lp_opts, pad_id=self.engine.pad_id,
                                       with_entropy=with_entropy)

    def update(self, ro: Rollout) -> dict[str, float]:
        """Old/ref log-probs, then PPO epochs over mini-batches; returns the update's metrics.

        An optimizer step whose gradient norm is not finite is skipped (the gradients are dropped)
        and counted in ``actor/grad_norm_nonfinite_skips``, as verl's actor does.
        """
        a = self.cfg.actor
        n_seq = len(ro)
        mini = a.ppo_mini_batch_size * self.cfg.rollout.n
        micro_slices = [
            [slice(m + s.start, m + s.stop) for s in self._micro_batches(min(mini, n_seq - m))]
            for m in range(0, n_seq, mini)
        ]
        flat = [s for group in micro_slices for s in group]  # partitions [0, n_seq) in order
        # old and reference log-probs on the very micro-batches the update will use
        old, ref, ent = {}, {}, {}
        with torch.no_grad():
            for micro in flat:
                old[micro.start], ent[micro.start], _ = self._log_probs(self.model, ro, micro, with_entropy=True)
                if self.ref_model is not None:
                    ref[micro.start] = self._log_probs(self.ref_model, ro, micro)[0]
        mask = ro.batch.mask
        all_old = torch.cat([old[s.start] for s in flat])
        parity = ((all_old - ro.batch.logprobs).abs() * mask).max().item()
        adv_tok = broadcast_to_tokens(ro.advantages.to(self.device), mask)

        stats: Counter[str] = Counter()
        n_stat = 0
        first_ratio_dev = None
        grad_norms, skips = [], 0
        for _ in range(a.ppo_epochs):
            for group in micro_slices:
                self.optimizer.zero_grad(set_to_none=True)
                mini_tokens = sum(int(mask[s].sum()) for s in group)
                mini_seqs = sum(s.stop - s.start for s in group)
                for s in group:
                    lp, _, _ = self._log_probs(self.model, ro, s)
                    m = mask[s]
                    loss, st = compute_actor_loss(old[s.start], lp, adv_tok[s], m, self.loss_cfg,
                                                  ref_log_prob=ref.get(s.start))
                    if first_ratio_dev is None:
                        first_ratio_dev = ((lp.detach() - old[s.start]).abs() * m).max().item()
                    if self.loss_cfg.loss_agg_mode in ("token-mean", "token-sum"):
                        weight = int(m.sum()) / max(mini_tokens, 1)
                    else:
                        weight = (s.stop - s.start) / mini_seqs
                    (loss * weight).backward()
                    for k, v in st.items():
                        stats[k] += float(v) * weight
                n_stat += 1
                norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.grad_clip))
                if math.isfinite(norm):
                    grad_norms.append(norm)
                    self.optimizer.step()
                else:  # a NaN/inf gradient would poison the weights and the optimizer state
                    skips += 1
                    self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.grad_norm_skips += skips
        kl_ref = 0.0
        if self.ref_model is not None:
            all_ref = torch.cat([ref[s.start] for s in flat])
            kl_ref = float((kl_penalty(all_old, all_ref, "low_var_kl") * mask).sum() / mask.sum().clamp_min(1))
        all_ent = torch.cat([ent[s.start] for s in flat])
        out = {f"actor/{k}": v / max(n_stat, 1) for k, v in stats.items()}
        out.update({
            "actor/grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else float("nan"),
            "actor/grad_norm_nonfinite_skips": float(skips),
            "actor/grad_norm_nonfinite_skips_total": float(self.grad_norm_skips),
            "actor/kl_ref": kl_ref,
            "actor/entropy": float((all_ent * mask).sum() / mask.sum().clamp_min(1)),
            "actor/lr": self.scheduler.get_last_lr()[0],
            "actor/first_minibatch_max_abs_log_ratio": float(first_ratio_dev or 0.0),
            "replay/max_abs_diff": parity,
        })
        return out

    # ------------------------------------------------------------------------------------------
    def rollout_metrics(self, ro: Rollout) -> dict[str, float]:
        return rollout_metrics(ro, self.cfg.rollout.n, self.scorer.counts)

    def validate(self) -> dict[str, float]:
        """mean@n and unbiased pass@n on ``data.val_files`` with ``actor_rollout_ref.rollout.val_kwargs``
        (a fixed seed, so successive validations compare the policy, not the noise); overall and
        per data source (``val/<source>/mean@n``)."""
        from eval.metrics import pass_at_k

        st, n = self.cfg.val_soft_thinking_config(self.st_cfg)
        examples = self.val_examples
        samples = self.engine.generate(
            [self.prompt_ids(e) for e in examples], st, n=n,
            max_new_tokens=self.cfg.data.max_response_length, seed=step_seed(self.cfg.trainer.seed, -1),
        )
        scores = self.score(examples, n, samples)
        correct = [sum(sc > 0.5 for sc in scores[i * n : (i + 1) * n]) for i in range(len(examples))]
        out = {
            "val/mean@n": sum(correct) / (n * len(examples)),
            f"val/pass@{n}": sum(pass_at_k(n, c, n) for c in correct) / len(examples),
            "val/response_length_mean": sum(s.num_tokens for s in samples) / len(samples),
        }
        sources = [e.data_source or self.cfg.data.data_source for e in examples]
        if len(set(sources)) > 1:
            for src in sorted(set(sources)):
                c = [ci for ci, s in zip(correct, sources) if s == src]
                out[f"val/{src}/mean@n"] = sum(c) / (n * len(c))
        return out

    def train_step(self) -> dict[str, float]:
        step = self.global_step + 1
        t0 = time.perf_counter()
        examples = self.sampler.next_batch()
        ro = self.rollout(examples, step)
        t_gen = time.perf_counter() - t0
        metrics = self.rollout_metrics(ro)
        metrics["reward/failed_samples"] = float(self.grading_failures)
        t1 = time.perf_counter()
        metrics.update(self.update(ro))
        t_upd = time.perf_counter() - t1
        tokens = sum(x.num_tokens for x in ro.samples)
        metrics.update({
            "timing/gen_s": t_gen, "timing/update_s": t_upd, "timing/step_s": time.perf_counter() - t0,
            "throughput/tokens_per_s": tokens / max(time.perf_counter() - t0, 1e-9),
        })
        self.global_step = step
        return metrics

    def train(self) -> dict[str, float]:
        t = self.cfg.trainer
        last: dict[str, float] = {}
        end = t.total_training_steps
        if t.stop_after_steps is not None:
            end = min(end, self.global_step + t.stop_after_steps)
        bar = tqdm(total=t.total_training_steps, initial=self.global_step, desc=f"{t.arm}", disable=not t.progress)
        try:
            if t.test_freq and self.global_step == 0:
                self.logger.log(0, self.validate())
            while self.global_step < end:
                last = self.train_step()
                if t.test_freq and self.global_step % t.test_freq == 0:
                    last.update(self.validate())
                self.logger.log(self.global_step, last)
                bar.update(1)
                if t.save_freq and self.global_step % t.save_freq == 0:
                    self.save()
            if not (t.save_freq and self.global_step % t.save_freq == 0):
                self.save()
        finally:
            bar.close()
            self.close()
        return last

    def close(self) -> None:
        """Close the logger and the scorer and release the run folder (train() ends with this)."""
        self.logger.close()
        if self._owns_scorer:
            self.scorer.close()
        self._lock.close()
