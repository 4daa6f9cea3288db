"""SGLang plug-in entry point (``[project.entry-points."sglang.srt.plugins"] softgrpo``).

``sglang.srt.plugins.load_plugins()`` calls :func:`register` in the launcher and in every
scheduler / TP-rank process. It only registers hooks (and, on sglang 0.5.12, lifts the forced
stream interval so non-streaming requests keep their whole trace); the loader swallows
exceptions, so the plug-in checks itself in its ``load_model`` hook and clients check every trace.

Dormant unless ``SOFTGRPO_SGLANG=on`` (soft requests rejected when the server is incompatible)
or ``require`` (an incompatible server refuses to start). ``SGLANG_PLUGINS=none`` disables it too.
"""

from __future__ import annotations

import logging

from soft_thinking.engines.sglang.settings import plugin_mode

logger = logging.getLogger("softgrpo.sglang")

NO_FORCED_FLUSH = 1 << 30


def register() -> None:
    """Register the four hooks with SGLang's ``HookRegistry`` (nothing when ``SOFTGRPO_SGLANG`` is off)."""
    if plugin_mode() == "off":
        return
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    from soft_thinking.engines.sglang.hooks import HOOKS

    for target, (hook, kind) in HOOKS.items():
        HookRegistry.register(target, hook, getattr(HookType, kind))
    keep_whole_trace()


def keep_whole_trace() -> bool:
    """sglang 0.5.12 replaces ``meta_info[k]`` per flushed chunk (every 50 tokens of a non-streaming request).

    Without ``TokenizerManager._accumulate_request_meta_info`` (added later), set the scheduler's
    forced stream interval so high that a non-streaming request flushes once, at the end.
    Returns whether the fix was applied.
    """
    try:
        from sglang.srt.managers import scheduler_output_processor_mixin as mixin
        from sglang.srt.managers.tokenizer_manager import TokenizerManager
    except ImportError as exc:  # a process without the scheduler modules (nothing to fix there)
        logger.debug("softgrpo: stream-interval fix skipped (%s)", exc)
        return False
    if hasattr(TokenizerManager, "_accumulate_request_meta_info"):
        return False
    mixin.DEFAULT_FORCE_STREAM_INTERVAL = NO_FORCED_FLUSH
    return True
