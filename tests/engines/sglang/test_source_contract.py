"""The SGLang names the plug-in relies on, checked in sglang's own source (0.5.12) without importing sglang.

Where the source comes from (else every test here skips): ``SOFTGRPO_SGLANG_SRC`` (a folder holding
``sglang/``), ``SOFTGRPO_SGLANG_WHEEL`` (the ``.whl``; ``pip download --no-deps sglang==0.5.12``), or an
installed ``sglang`` found by ``importlib.util.find_spec`` (its ``__init__`` is never executed).
``hook_registry.py`` imports only the standard library, so it is run for real on stub targets.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import types
import zipfile
from pathlib import Path

import pytest

from soft_thinking.engines.sglang import hooks
from soft_thinking.engines.sglang.refusals import server_refusals


def _reader():
    src = os.environ.get("SOFTGRPO_SGLANG_SRC")
    if src and (Path(src) / "sglang").is_dir():
        return lambda rel: (Path(src) / "sglang" / rel).read_text()
    wheel = os.environ.get("SOFTGRPO_SGLANG_WHEEL")
    if wheel and Path(wheel).is_file():
        z = zipfile.ZipFile(wheel)
        return lambda rel: z.read(f"sglang/{rel}").decode()
    spec = importlib.util.find_spec("sglang")
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0])
        return lambda rel: (root / rel).read_text()
    return None


READ = _reader()
pytestmark = pytest.mark.skipif(READ is None, reason="sglang source not available (set SOFTGRPO_SGLANG_SRC or "
                                                     "SOFTGRPO_SGLANG_WHEEL; pip download --no-deps sglang==0.5.12)")


def tree(rel: str) -> ast.Module:
    return ast.parse(READ(rel))


def cls(module: ast.Module, name: str) -> ast.ClassDef:
    for node in ast.walk(module):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"class {name} not found")


def method(c: ast.ClassDef, name: str) -> ast.FunctionDef:
    for node in c.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{c.name}.{name} not found")


def params(f: ast.FunctionDef) -> list[str]:
    return [a.arg for a in f.args.args]


def fields_of(c: ast.ClassDef) -> set[str]:
    return {n.target.id for n in c.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def self_attrs(f: ast.FunctionDef) -> set[str]:
    return {t.attr for n in ast.walk(f) if isinstance(n, (ast.Assign, ast.AnnAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}


def test_hook_targets_and_signatures() -> None:
    assert set(hooks.TARGETS.values()) == {
        "sglang.srt.model_executor.model_runner.ModelRunner.load_model",
        "sglang.srt.model_executor.model_runner.ModelRunner.sample",
        "sglang.srt.managers.schedule_batch.Req.__init__",
        "sglang.srt.sampling.sampling_params.SamplingParams.verify",
    }
    runner = cls(tree("srt/model_executor/model_runner.py"), "ModelRunner")
    assert params(method(runner, "load_model")) == ["self"]
    assert params(method(runner, "sample")) == ["self", "logits_output", "forward_batch"]
    assert "server_args" in self_attrs(method(runner, "__init__"))
    req = cls(tree("srt/managers/schedule_batch.py"), "Req")
    init = method(req, "__init__")
    assert params(init)[:5] == ["self", "rid", "origin_input_text", "origin_input_ids", "sampling_params"]
    assert {"top_logprobs_num", "token_ids_logprob", "return_hidden_states", "vocab_size", "extra_key"} <= set(params(init))
    assert {"rid", "output_ids", "sampling_params", "extra_key", "req_pool_idx", "vocab_size", "top_logprobs_num",
            "token_ids_logprob", "return_hidden_states"} <= self_attrs(init)
    assert params(method(req, "set_finish_with_abort")) == ["self", "error_msg"]
    sp = cls(tree("srt/sampling/sampling_params.py"), "SamplingParams")
    assert params(method(sp, "verify")) == ["self", "vocab_size"]
    assert {"temperature", "top_p", "top_k", "min_p", "custom_params", "frequency_penalty", "presence_penalty",
            "repetition_penalty", "min_new_tokens", "logit_bias", "regex", "json_schema", "ebnf",
            "structural_tag"} <= self_attrs(method(sp, "__init__"))


def test_forward_batch_logits_output_and_models() -> None:
    fb = tree("srt/model_executor/forward_batch_info.py")
    assert {"forward_mode", "req_pool_indices", "seq_lens", "rids", "req_to_token_pool", "return_logprob",
            "positions"} <= fields_of(cls(fb, "ForwardBatch"))
    method(cls(fb, "ForwardMode"), "is_decode")
    lo = cls(tree("srt/layers/logits_processor.py"), "LogitsProcessorOutput")
    assert {"next_token_logits", "next_token_logprobs", "customized_info"} <= fields_of(lo)
    for rel, name in (("srt/models/qwen2.py", "Qwen2ForCausalLM"), ("srt/models/qwen3.py", "Qwen3ForCausalLM"),
                      ("srt/models/llama.py", "LlamaForCausalLM")):
        c = cls(tree(rel), name)
        method(c, "get_input_embeddings")
        assert params(method(c, "forward"))[:5] == ["self", "input_ids", "positions", "forward_batch", "input_embeds"]


def test_server_args_fields_and_trace_channel() -> None:
    sa = fields_of(cls(tree("srt/server_args.py"), "ServerArgs"))
    probe = types.SimpleNamespace(**{n: None for n in sa})
    server_refusals(probe, ["Qwen2ForCausalLM"])  # every name it reads exists (None-safe)
    read = {"speculative_algorithm", "enable_mixed_chunk", "enable_dp_attention", "pp_size", "disaggregation_mode",
            "enable_pdmux", "enable_two_batch_overlap", "enable_lora", "lora_paths", "lora_target_modules"}
    assert read <= sa
    mixin = tree("srt/managers/scheduler_output_processor_mixin.py")
    assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_FORCE_STREAM_INTERVAL" for t in n.targets)
               for n in mixin.body)
    tm = cls(tree("srt/managers/tokenizer_manager.py"), "TokenizerManager")
    names = {n.name for n in tm.body if isinstance(n, ast.FunctionDef)}
    assert "_accumulate_request_meta_info" not in names  # 0.5.12: the stream-interval fix is needed
    plugins = tree("srt/plugins/__init__.py")
    groups = {t.id: n.value.value for n in plugins.body if isinstance(n, ast.Assign) for t in n.targets
              if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert groups["GENERAL_PLUGINS_GROUP"] == "sglang.srt.plugins"


def _hook_registry() -> types.ModuleType:
    mod = types.ModuleType("sglang.srt.plugins.hook_registry")
    exec(compile(READ("srt/plugins/hook_registry.py"), "hook_registry.py", "exec"), mod.__dict__)
    return mod


def test_hook_registry_semantics_on_stub_targets(monkeypatch) -> None:
    hr = _hook_registry()
    stub = types.ModuleType("softgrpo_stub_target")

    class Runner:
        def sample(self, logits_output, forward_batch):
            return ("stock", logits_output, forward_batch)

        def load_model(self):
            self.loaded = True

    stub.Runner = Runner
    monkeypatch.setitem(sys.modules, "softgrpo_stub_target", stub)
    calls = []

    def around(original, runner, logits_output, forward_batch):
        calls.append("around")
        return ("ours", original(runner, logits_output, forward_batch))

    def after(result, runner):
        calls.append(("after", runner.loaded, result))

    hr.HookRegistry.reset()
    hr.HookRegistry.register("softgrpo_stub_target.Runner.sample", around, hr.HookType.AROUND)
    hr.HookRegistry.register("softgrpo_stub_target.Runner.load_model", after, hr.HookType.AFTER)
    hr.HookRegistry.apply_hooks()
    r = Runner()
    r.load_model()
    assert r.sample(1, forward_batch=2) == ("ours", ("stock", 1, 2))  # keywords bind to our parameter names
    assert calls == [("after", True, None), "around"]
    assert hasattr(Runner.sample, "__wrapped__") and hasattr(Runner.load_model, "__wrapped__")
    for _, kind in hooks.HOOKS.values():
        assert hasattr(hr.HookType, kind)


def test_register_is_dormant_unless_enabled(monkeypatch) -> None:
    hr = _hook_registry()
    for name in ("sglang", "sglang.srt", "sglang.srt.plugins"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "sglang.srt.plugins.hook_registry", hr)
    from soft_thinking import sglang_plugin

    hr.HookRegistry.reset()
    monkeypatch.delenv("SOFTGRPO_SGLANG", raising=False)
    sglang_plugin.register()
    assert dict(hr.HookRegistry._hooks) == {}
    monkeypatch.setenv("SOFTGRPO_SGLANG", "on")
    sglang_plugin.register()
    got = {t: [(ht.name, h) for ht, h, _ in v] for t, v in hr.HookRegistry._hooks.items()}
    assert got == {t: [(kind, fn)] for t, (fn, kind) in hooks.HOOKS.items()}
    hr.HookRegistry.reset()
