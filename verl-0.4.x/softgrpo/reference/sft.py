"""Supervised warm start: teach a tiny model the ``<think>`` scratchpad format before RL.

Loss = mean token cross-entropy on the target ``scratchpad + EOS`` (prompt tokens masked).
Training stops as soon as the held-out *greedy* accuracy reaches ``target_accuracy`` (the curve
is steep, so a step budget alone would over- or under-shoot), or at ``max_steps``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.hf.engine import SoftThinkingEngine
from soft_thinking.text import apply_chat_template


@dataclass
class SFTResult:
    steps: int
    accuracy: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def format_prompt(tokenizer: Any, user_text: str, chat_template: bool) -> str:
    """The prompt text the model sees: the chat template's user turn, or the raw text."""
    return apply_chat_template(tokenizer, user_text) if chat_template else user_text


def _encode(tokenizer: Any, rows: Sequence[dict[str, str]], chat_template: bool) -> list[tuple[list[int], list[int]]]:
    out = []
    for r in rows:
        prompt = tokenizer.encode(format_prompt(tokenizer, r["prompt"], chat_template), add_special_tokens=False)
        target = tokenizer.encode(r["scratchpad"], add_special_tokens=False) + [tokenizer.eos_token_id]
        out.append((prompt, target))
    return out


def _batch(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, device: torch.device):
    length = max(len(p) + len(t) for p, t in pairs)
    ids = torch.full((len(pairs), length), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), length), -100, dtype=torch.long)
    mask = torch.zeros(len(pairs), length, dtype=torch.long)
    for i, (p, t) in enumerate(pairs):
        seq = p + t
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p) : len(seq)] = torch.tensor(t)
        mask[i, : len(seq)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def greedy_accuracy(
    engine: SoftThinkingEngine, rows: Sequence[dict[str, str]], grade: Callable, max_new_tokens: int, chat_template: bool
) -> float:
    """Held-out accuracy of greedy discrete decoding."""
    prompts = [format_prompt(engine.tokenizer, r["prompt"], chat_template) for r in rows]
    cfg = SoftThinkingConfig(enable_soft_thinking=False, temperature=0.0)
    samples = engine.generate(prompts, cfg, n=1, max_new_tokens=max_new_tokens, seed=0)
    scores = grade([s.text for s in samples], [r["answer"] for r in rows])
    return sum(scores) / len(scores)


def warm_start(
    model: Any,
    tokenizer: Any,
    train_rows: Sequence[dict[str, str]],
    val_rows: Sequence[dict[str, str]],
    grade: Callable[[list[str], list[str]], list[float]],
    *,
    lr: float = 3e-3,
    batch_size: int = 32,
    max_steps: int = 3000,
    eval_every: int = 50,
    target_accuracy: float = 0.4,
    max_new_tokens: int = 48,
    seed: int = 0,
    chat_template: bool = True,
    progress: bool = True,
) -> SFTResult:
    """Train until held-out greedy accuracy >= ``target_accuracy`` (checked every ``eval_every``)."""
    if not 0 < target_accuracy <= 1:
        raise ValueError(f"target_accuracy={target_accuracy!r}: allowed (0, 1]")
    device = next(model.parameters()).device
    pairs = _encode(tokenizer, train_rows, chat_template)
    rng = random.Random(f"softgrpo-sft:{seed}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    engine = SoftThinkingEngine(model, tokenizer, device=device)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    acc = 0.0
    step = 0
    bar = tqdm(total=max_steps, desc="sft warm start", disable=not progress)
    while step < max_steps:
        batch = rng.sample(pairs, min(batch_size, len(pairs)))
        ids, labels, mask = _batch(batch, tokenizer.pad_token_id, device)
        model.train()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % eval_every == 0:
            model.eval()
            acc = greedy_accuracy(engine, val_rows, grade, max_new_tokens, chat_template)
            history.append({"step": step, "loss": loss.item(), "greedy_accuracy": acc})
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}")
            if not progress:
                print(f"[sft] step {step} loss {loss.item():.3f} held-out greedy accuracy {acc:.2f}", flush=True)
            if acc >= target_accuracy:
                break
    bar.close()
    model.eval()
    return SFTResult(steps=step, accuracy=acc, seconds=time.perf_counter() - t0, history=history)
