"""Which SGLang server settings soft thinking cannot run under (a pure function of the server args).

Refused (sglang 0.5.12 ``ServerArgs`` field names):

- ``speculative_algorithm``: TARGET_VERIFY graphs, several tokens per request, a draft worker;
- ``enable_mixed_chunk``: decode rows run inside an extend forward without a per-row embedding path;
- ``enable_dp_attention``: attention-TP groups, padded IDLE batches, scattered embedding input;
- ``pp_size > 1``: the embedding lives on the first stage, sampling on the last;
- ``disaggregation_mode`` other than ``"null"``, ``enable_pdmux``, ``enable_two_batch_overlap``;
- LoRA on ``embed_tokens`` (the LoRA embedding expects ``B`` tokens, the mixture calls it on
  ``B (K + 1)``), or LoRA with unspecified target modules;
- architectures other than Qwen2 / Qwen3 / Llama (their ``forward`` takes decode ``input_embeds``).

Allowed: tensor parallelism, plain data parallelism, chunked prefill, the radix cache (soft
requests get a private ``extra_key``), the overlap scheduler, CUDA graphs and torch.compile.

Under ``SOFTGRPO_SGLANG=require`` any refusal stops the server at start-up; under ``on`` only soft
requests are rejected (with the same message).
"""

from __future__ import annotations

from typing import Any

ALLOWED_ARCHITECTURES = ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM")


def server_refusals(args: Any, architectures: list[str] | tuple[str, ...] | None) -> list[str]:
    """One message per server setting that soft thinking refuses (empty: compatible)."""

    def get(name: str, default: Any = None) -> Any:
        return getattr(args, name, default)

    out = []
    if get("speculative_algorithm"):
        out.append(f"speculative_algorithm={get('speculative_algorithm')!r} (speculative decoding)")
    for flag, why in (("enable_mixed_chunk", "mixed chunked prefill runs decode rows inside an extend forward"),
                      ("enable_dp_attention", "DP attention"),
                      ("enable_pdmux", "PD multiplexing"),
                      ("enable_two_batch_overlap", "two-batch overlap")):
        if get(flag):
            out.append(f"{flag}=True ({why})")
    if (get("pp_size", 1) or 1) > 1:
        out.append(f"pp_size={get('pp_size')} (pipeline parallelism: embedding and sampling on different stages)")
    if get("disaggregation_mode", "null") not in ("null", None):
        out.append(f"disaggregation_mode={get('disaggregation_mode')!r} (prefill/decode disaggregation)")
    if get("enable_lora") or get("lora_paths"):
        targets = get("lora_target_modules")
        names = {targets} if isinstance(targets, str) else set(targets or ())
        if not names:
            out.append("LoRA without lora_target_modules (set them explicitly, without embed_tokens)")
        elif names & {"embed_tokens", "all"}:
            out.append(f"lora_target_modules={sorted(names)} (LoRA on embed_tokens)")
    arch = (architectures or [None])[0]
    if arch not in ALLOWED_ARCHITECTURES:
        out.append(f"architecture {arch!r} (allowed: {ALLOWED_ARCHITECTURES})")
    return out
