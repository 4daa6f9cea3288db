"""Prompt construction (spec §5): problem + instruction as one user turn through the chat template."""

from __future__ import annotations

from typing import Any

from eval.settings import SettingsError

DEFAULT_TEMPLATE = "{problem} Let's think step by step and output the final answer within \\boxed{{}}."


def check_template(template: Any) -> str:
    """A template must be a string containing ``{problem}`` and no other field (else SettingsError)."""
    if not isinstance(template, str):
        raise SettingsError(f"--prompt-template={template!r} is invalid: allowed a string with the field {{problem}}")
    try:
        template.format(problem="x")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise SettingsError(
            f"--prompt-template {template!r} is invalid ({exc}): allowed a string with the single field "
            "{problem}; write literal braces as {{ }}"
        ) from exc
    if "{problem}" not in template:
        raise SettingsError(f"--prompt-template {template!r} is invalid: it must contain {{problem}}")
    return template


def user_message(problem: str, template: str = DEFAULT_TEMPLATE) -> str:
    return template.format(problem=problem)


def build_prompt(tokenizer: Any, problem: str, template: str = DEFAULT_TEMPLATE) -> str:
    """``tokenizer.apply_chat_template([{"role": "user", ...}], tokenize=False, add_generation_prompt=True)``."""
    messages = [{"role": "user", "content": user_message(problem, template)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
