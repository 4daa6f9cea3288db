"""Soft-thinking decoding for SofT-GRPO.

- ``soft_thinking.core``: every formula of the method, pure torch (no engine types).
- ``soft_thinking.engine``: the reference engine on Hugging Face transformers.
- ``soft_thinking.models`` / ``soft_thinking.testing``: model loading and tiny offline models.
"""

__version__ = "0.1.0"
