"""Soft-thinking decoding for SofT-GRPO.

- ``soft_thinking.core``: every formula of the method, pure torch (no engine types).
- ``soft_thinking.engines.base``: :class:`Sample` and the ``RolloutEngine`` protocol every engine implements.
- ``soft_thinking.engines.hf.engine``: the reference engine on Hugging Face transformers (the decode loop).
- ``soft_thinking.engines.sglang``: the SGLang plug-in.
- ``soft_thinking.engines.hf.models`` / ``soft_thinking.engines.hf.tiny``: model loading and tiny offline models.
"""

__version__ = "0.1.0"
