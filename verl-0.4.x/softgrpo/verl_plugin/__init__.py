"""SofT-GRPO as a verl 0.9.1 plug-in (entry-point group ``verl.plugins``; no verl file is copied or edited).

verl imports this package in every process that imports ``verl``. It registers the CPU platform
(inert unless ``VERL_PLATFORM=cpu``) and, with ``SOFTGRPO_VERL_PLUGIN=1``, the soft-replay engine,
the ``hf_soft``/``sglang``/``vllm`` rollouts, the ``soft_single_turn`` agent loop and the ``softgrpo_sync``
trainer (table in :mod:`softgrpo.verl_plugin.registration`). verl would log a failure here at DEBUG
only, so it is printed to stderr before it propagates.
"""

from __future__ import annotations

import sys
import traceback


def _load() -> None:
    try:
        from softgrpo.verl_plugin.registration import register_all

        register_all()
    except BaseException:
        print("error: the SofT-GRPO verl plug-in failed to register:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        raise


_load()
