"""The local LLM launcher's refusals: each is one line that says what to do, raised before any process starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from synthner_shared.local_llm import LocalLLMError, local_llm, smollm2_gguf


def test_smollm2_gguf_is_found_in_its_package() -> None:
    assert smollm2_gguf().suffix == ".gguf"


async def test_a_port_in_use_is_refused_with_what_to_do() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalLLMError, match=f"port {port} .* in use: stop what listens there"):
            async with local_llm(port=port):
                pytest.fail("the server must not start")


async def test_a_missing_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalLLMError, match="does not exist"):
        async with local_llm(model_path=tmp_path / "missing.gguf"):
            pytest.fail("the server must not start")
