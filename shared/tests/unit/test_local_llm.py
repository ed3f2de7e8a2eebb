"""The local LLM launcher's refusals: each is one line that says what to do, raised before any process starts."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from synthner_shared.local_llm import LocalLLMError, local_llm, native_server, smollm2_gguf


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


def test_parallel_below_one_is_refused() -> None:
    async def start() -> None:
        async with local_llm(parallel=0):
            pytest.fail("the server must not start")

    with pytest.raises(LocalLLMError, match="parallel must be at least 1"):
        asyncio.run(start())


async def test_a_configured_llama_server_that_is_not_executable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTHNER_LLAMA_SERVER", str(tmp_path / "llama-server"))
    with pytest.raises(LocalLLMError, match="is not an executable file"):
        async with local_llm():
            pytest.fail("the server must not start")


@pytest.mark.skipif(native_server() is None, reason="llama-server not built (make install builds it)")
async def test_llama_server_runs_one_slot_per_parallel_request_each_with_the_full_context() -> None:
    async with local_llm(parallel=4, n_ctx=2048, server="native") as llm:
        assert (llm.parallel, llm.server) == (4, "llama-server")
        prompts = [f"Name {n} flu symptoms." for n in (2, 3, 4, 5)]
        replies = await asyncio.gather(*(complete(llm.base_url, llm.model, prompt) for prompt in prompts))
        async with httpx.AsyncClient(timeout=30) as client:
            slots = (await client.get(f"http://127.0.0.1:{llm.port}/slots")).json()
    assert all(replies)
    assert [slot["n_ctx"] for slot in slots] == [2048] * 4


async def test_the_python_server_says_it_decodes_one_request_at_a_time() -> None:
    async with local_llm(parallel=4, server="python") as llm:
        assert (llm.parallel, llm.server) == (1, "llama-cpp-python")
        assert await complete(llm.base_url, llm.model, "Name two symptoms of influenza.")


async def complete(base_url: str, model: str, prompt: str) -> str:
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.post(
            f"{base_url}/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 24,
                "temperature": 0.0,
                "seed": 1,
            },
        )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])
