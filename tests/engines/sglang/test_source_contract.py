"""The SGLang names the plug-in relies on, checked in sglang's own source without importing sglang.

Run against every SGLang release that ``sglang_soft_thinking_pkg/pyproject.toml``'s ``sglang`` extra admits
(``TESTED``; ``test_declared_range_is_the_tested_versions`` keeps the two equal): each wheel is fetched with
``pip download --no-deps`` into ``.cache/sglang-wheels/`` (about 8 MB each) and read as a zip. The tests skip
only when pip cannot reach the package index, and say so. ``SOFTGRPO_SGLANG_SRC`` (a folder holding
``sglang/``) or ``SOFTGRPO_SGLANG_WHEEL`` (a ``.whl``) add one more source; an installed ``sglang`` is checked
too (its ``__init__`` is never executed) and must be a tested version.
``hook_registry.py`` imports only the standard library, so it is run for real on stub targets.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tomllib
import types
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from sglang_wheels import OFFLINE, pip_download  # tests/sglang_wheels.py

from soft_thinking.engines.sglang import hooks
from soft_thinking.engines.sglang.refusals import server_refusals

ROOT = Path(__file__).resolve().parents[3]
#: every SGLang release the plug-in's declared range admits; 0.5.13 and later fail this contract
#: (ForwardBatch.req_to_token_pool gone, scheduler_output_processor_mixin.py moved)
TESTED = ("0.5.12", "0.5.12.post1")


Reader = Callable[[str], str]


def wheel_reader(wheel: Path) -> Reader:
    z = zipfile.ZipFile(wheel)
    return lambda rel: z.read(f"sglang/{rel}").decode()


def _sources() -> list:
    out: list = [pytest.param(("release", v), id=v) for v in TESTED]
    src = os.environ.get("SOFTGRPO_SGLANG_SRC")
    if src:
        out.append(pytest.param(("src", src), id="SOFTGRPO_SGLANG_SRC"))
    wheel = os.environ.get("SOFTGRPO_SGLANG_WHEEL")
    if wheel:
        out.append(pytest.param(("wheel", wheel), id="SOFTGRPO_SGLANG_WHEEL"))
    if importlib.util.find_spec("sglang") is not None:
        out.append(pytest.param(("installed", None), id="installed"))
    return out


@pytest.fixture(scope="module", params=_sources())
def read(request) -> Reader:
    kind, where = request.param
    if kind == "release":
        return wheel_reader(pip_download(where))
    if kind == "src":
        assert (Path(where) / "sglang").is_dir(), f"SOFTGRPO_SGLANG_SRC={where} holds no sglang/ folder"
        return lambda rel: (Path(where) / "sglang" / rel).read_text()
    if kind == "wheel":
        assert Path(where).is_file(), f"SOFTGRPO_SGLANG_WHEEL={where} is not a file"
        return wheel_reader(Path(where))
    version = importlib.metadata.version("sglang")
    assert version in TESTED, f"the installed sglang {version} is not a tested version {TESTED}"
    root = Path(list(importlib.util.find_spec("sglang").submodule_search_locations)[0])
    return lambda rel: (root / rel).read_text()


def declared() -> Requirement:
    data = tomllib.loads((ROOT / "sglang_soft_thinking_pkg" / "pyproject.toml").read_text())
    (text,) = data["project"]["optional-dependencies"]["sglang"]
    return Requirement(text)


def test_tested_versions_are_declared_and_installed_pin_is_one_of_them() -> None:
    spec = declared().specifier
    assert all(spec.contains(v, prereleases=True) for v in TESTED)
    assert not spec.contains("0.5.13") and not spec.contains("0.5.11")  # negative control: the range is bounded
    pins = [ln.strip() for ln in (ROOT / "requirements-gpu-nodeps.txt").read_text().splitlines()
            if ln.strip().startswith("sglang==")]
    assert len(pins) == 1 and pins[0].removeprefix("sglang==") in TESTED


def test_declared_range_is_the_tested_versions() -> None:
    """Every SGLang release on the index that the declared range admits is in ``TESTED``, and no other."""
    done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "sglang"], capture_output=True,
                          text=True, timeout=300)
    text = done.stdout + done.stderr
    if done.returncode != 0 and any(word in text for word in OFFLINE):
        pytest.skip(f"pip cannot reach the package index to list sglang releases: {text.strip().splitlines()[-1]}")
    assert done.returncode == 0, text
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("Available versions:"))
    released = [v.strip() for v in line.split(":", 1)[1].split(",")]
    assert "0.5.12" in released and "0.5.23" in released  # the listing is complete enough to judge
    admitted = sorted((v for v in released if declared().specifier.contains(v, prereleases=True)), key=Version)
    assert admitted == sorted(TESTED, key=Version)


def tree(read: Reader, rel: str) -> ast.Module:
    return ast.parse(read(rel))


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


def test_hook_targets_and_signatures(read: Reader) -> None:
    assert set(hooks.TARGETS.values()) == {
        "sglang.srt.model_executor.model_runner.ModelRunner.load_model",
        "sglang.srt.model_executor.model_runner.ModelRunner.sample",
        "sglang.srt.managers.schedule_batch.Req.__init__",
        "sglang.srt.sampling.sampling_params.SamplingParams.verify",
    }
    runner = cls(tree(read, "srt/model_executor/model_runner.py"), "ModelRunner")
    assert params(method(runner, "load_model")) == ["self"]
    assert params(method(runner, "sample")) == ["self", "logits_output", "forward_batch"]
    assert "server_args" in self_attrs(method(runner, "__init__"))
    req = cls(tree(read, "srt/managers/schedule_batch.py"), "Req")
    init = method(req, "__init__")
    assert params(init)[:5] == ["self", "rid", "origin_input_text", "origin_input_ids", "sampling_params"]
    assert {"top_logprobs_num", "token_ids_logprob", "return_hidden_states", "vocab_size", "extra_key"} <= set(params(init))
    assert {"rid", "output_ids", "sampling_params", "extra_key", "req_pool_idx", "vocab_size", "top_logprobs_num",
            "token_ids_logprob", "return_hidden_states"} <= self_attrs(init)
    assert params(method(req, "set_finish_with_abort")) == ["self", "error_msg"]
    sp = cls(tree(read, "srt/sampling/sampling_params.py"), "SamplingParams")
    assert params(method(sp, "verify")) == ["self", "vocab_size"]
    assert {"temperature", "top_p", "top_k", "min_p", "custom_params", "frequency_penalty", "presence_penalty",
            "repetition_penalty", "min_new_tokens", "logit_bias", "regex", "json_schema", "ebnf",
            "structural_tag"} <= self_attrs(method(sp, "__init__"))


def test_forward_batch_logits_output_and_models(read: Reader) -> None:
    fb = tree(read, "srt/model_executor/forward_batch_info.py")
    assert {"forward_mode", "req_pool_indices", "seq_lens", "rids", "req_to_token_pool", "return_logprob",
            "positions"} <= fields_of(cls(fb, "ForwardBatch"))
    method(cls(fb, "ForwardMode"), "is_decode")
    lo = cls(tree(read, "srt/layers/logits_processor.py"), "LogitsProcessorOutput")
    assert {"next_token_logits", "next_token_logprobs", "customized_info"} <= fields_of(lo)
    for rel, name in (("srt/models/qwen2.py", "Qwen2ForCausalLM"), ("srt/models/qwen3.py", "Qwen3ForCausalLM"),
                      ("srt/models/llama.py", "LlamaForCausalLM")):
        c = cls(tree(read, rel), name)
        method(c, "get_input_embeddings")
        assert params(method(c, "forward"))[:5] == ["self", "input_ids", "positions", "forward_batch", "input_embeds"]


def test_server_args_fields_and_trace_channel(read: Reader) -> None:
    sa = fields_of(cls(tree(read, "srt/server_args.py"), "ServerArgs"))
    probe = types.SimpleNamespace(**{n: None for n in sa})
    server_refusals(probe, ["Qwen2ForCausalLM"])  # every name it reads exists (None-safe)
    names_read = {"speculative_algorithm", "enable_mixed_chunk", "enable_dp_attention", "pp_size", "disaggregation_mode",
            "enable_pdmux", "enable_two_batch_overlap", "enable_lora", "lora_paths", "lora_target_modules"}
    assert names_read <= sa
    mixin = tree(read, "srt/managers/scheduler_output_processor_mixin.py")
    assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_FORCE_STREAM_INTERVAL" for t in n.targets)
               for n in mixin.body)
    tm = cls(tree(read, "srt/managers/tokenizer_manager.py"), "TokenizerManager")
    names = {n.name for n in tm.body if isinstance(n, ast.FunctionDef)}
    assert "_accumulate_request_meta_info" not in names  # 0.5.12: the stream-interval fix is needed
    plugins = tree(read, "srt/plugins/__init__.py")
    groups = {t.id: n.value.value for n in plugins.body if isinstance(n, ast.Assign) for t in n.targets
              if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert groups["GENERAL_PLUGINS_GROUP"] == "sglang.srt.plugins"


def _hook_registry(read: Reader) -> types.ModuleType:
    mod = types.ModuleType("sglang.srt.plugins.hook_registry")
    exec(compile(read("srt/plugins/hook_registry.py"), "hook_registry.py", "exec"), mod.__dict__)
    return mod


def test_hook_registry_semantics_on_stub_targets(read: Reader, monkeypatch) -> None:
    hr = _hook_registry(read)
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


def test_register_is_dormant_unless_enabled(read: Reader, monkeypatch) -> None:
    hr = _hook_registry(read)
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
