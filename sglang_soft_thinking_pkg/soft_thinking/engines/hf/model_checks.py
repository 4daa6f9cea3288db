"""Read-only checks of a model before anything is written or loaded (issue 17).

:func:`check_model_source` says what :func:`soft_thinking.engines.hf.models.load_model` will load
(a registered short name, a local folder, a Hub id) without loading weights;
:func:`check_model_folder` checks a local folder: the config loads (custom code only with
``trust_remote_code``), every JSON file parses, safetensors headers are intact and cover their files,
the index's shards exist. Each problem is a :class:`ModelLoadError` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from soft_thinking.engines.hf.models import MODEL_REGISTRY, ModelLoadError, _hub_error, _looks_like_path


def check_model_folder(folder: str | os.PathLike[str], trust_remote_code: bool = False) -> None:
    """Read-only checks of a local model folder before anything is written or loaded.

    ``config.json`` must load (``AutoConfig``; custom code only with ``trust_remote_code``), every
    other ``*.json`` file must parse, every ``*.safetensors`` file must have an intact header that covers the file (a truncated download is
    caught here, not after the run has started), and the shards named by
    ``model.safetensors.index.json`` must exist. Raises :class:`ModelLoadError` naming the file.
    """
    from safetensors import SafetensorError, safe_open
    from transformers import AutoConfig

    root = Path(folder).expanduser()
    cfg = root / "config.json"
    if not cfg.is_file():
        raise ModelLoadError(f"folder {str(root)!r} has no config.json: not a Hugging Face model folder")
    try:
        AutoConfig.from_pretrained(str(root), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        why = " ".join(str(exc).split())
        raise ModelLoadError(f"{cfg} does not load as a model config ({type(exc).__name__}: {why})"[:600]) from exc
    for extra in sorted(root.glob("*.json")):  # tokenizer, generation config, index: a truncated one is named here
        try:
            json.loads(extra.read_bytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{extra} is not valid JSON ({exc}); re-download or replace it") from exc
    index = root / "model.safetensors.index.json"
    shards = sorted(root.glob("*.safetensors"))
    if index.is_file():
        try:
            wanted = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelLoadError(f"{index} is not a valid safetensors index ({type(exc).__name__}: {exc})") from exc
        missing = sorted(w for w in wanted if not (root / w).is_file())
        if missing:
            raise ModelLoadError(f"{index} names missing weight files {missing[:5]}; re-download them")
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"weight file {shard} is damaged ({exc}); re-download or replace it") from exc
    if not shards and not any(root.glob("*.bin")) and not any(root.glob("*.pt")):
        raise ModelLoadError(f"folder {str(root)!r} has a config.json but no weights (*.safetensors, *.bin)")


def check_model_source(name_or_path: str, trust_remote_code: bool = False) -> str:
    """What :func:`load_model` will load, checked without loading weights or writing anything.

    Returns ``"registry"`` (a short name of :data:`MODEL_REGISTRY`, built on first use), ``"folder"``
    (a local folder that passed :func:`check_model_folder`) or ``"hub"`` (a Hub id whose config
    loads from the Hub or its local cache). Raises :class:`ModelLoadError` otherwise.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ModelLoadError(f"--model={name_or_path!r} is invalid: allowed a model folder, a Hub id or one of "
                             f"{sorted(MODEL_REGISTRY)}")
    if name_or_path in MODEL_REGISTRY:
        return "registry"
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        check_model_folder(path, trust_remote_code)
        return "folder"
    if _looks_like_path(name_or_path) or path.exists():
        raise ModelLoadError(
            f"model path {name_or_path!r} is not a directory; known short names: {', '.join(MODEL_REGISTRY)}"
        )
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(name_or_path, exc) from exc
    return "hub"
