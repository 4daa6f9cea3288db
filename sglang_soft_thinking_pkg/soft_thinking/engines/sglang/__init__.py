"""Soft thinking inside SGLang (0.5.12 and 0.5.12.post1, the contract-tested range) through its plug-in API, without a fork.

- ``settings``: per-request flags from ``custom_params``; ``refusals``: incompatible server settings;
- ``table``: per-slot device state; ``mixture``: the in-graph soft input; ``codec``: the trace rows;
- ``hooks``: the four SGLang hooks; ``client``: the offline ``sglang.Engine`` wrapper.

The entry point is :func:`soft_thinking.sglang_plugin.register` (dormant unless ``SOFTGRPO_SGLANG``).
"""
