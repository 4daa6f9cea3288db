"""Soft-thinking decoding for SofT-GRPO.

- ``soft_thinking.core``: every formula of the method, pure torch (no engine types).
- ``soft_thinking.engines.hf.engine``: the reference engine on Hugging Face transformers.
- ``soft_thinking.engines.hf.models`` / ``soft_thinking.engines.hf.tiny``: model loading and tiny offline models.
"""

__version__ = "0.1.0"
