"""vLLM plug-in entry point (``[project.entry-points."vllm.general_plugins"] softgrpo``).

vLLM's ``load_general_plugins()`` calls :func:`register` in every process (front end, engine core,
workers). It only registers the wrapper architectures ``SoftGRPOLlamaForCausalLM`` and
``SoftGRPOQwen2ForCausalLM`` with ``ModelRegistry`` as lazy ``module:Class`` strings (nothing is
imported, nothing changes for other engines). An engine opts in explicitly: the wrapper
architecture through ``hf_overrides``, the logits processor through ``logits_processors`` and the
trace RPCs through ``worker_extension_cls`` (:func:`soft_thinking.engines.vllm.client.engine_kwargs`);
each request then opts in with ``extra_args['enable_soft_thinking']``. ``SOFTGRPO_VLLM=off`` (or
``VLLM_PLUGINS`` without ``softgrpo``) skips the registration.
"""

from __future__ import annotations

import os

MODE_ENV = "SOFTGRPO_VLLM"
#: wrapper architecture -> lazy class path (soft_thinking.engines.vllm.model), base architecture -> wrapper
WRAPPERS = {f"SoftGRPO{base}": f"soft_thinking.engines.vllm.model:SoftGRPO{base}"
            for base in ("LlamaForCausalLM", "Qwen2ForCausalLM")}


def register() -> None:
    if os.environ.get(MODE_ENV, "on").strip().lower() == "off":
        return
    from vllm import ModelRegistry

    for arch, target in WRAPPERS.items():
        if arch not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(arch, target)
