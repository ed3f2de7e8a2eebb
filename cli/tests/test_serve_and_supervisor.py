"""``synthner serve`` happy paths (a service and the local LLM started locally, ready, stopped by SIGTERM) and the
process supervisor behind ``synthner demo --processes``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from synthner.demo.options import REPO_DATA, AnnotatorChoice, DemoOptions, GenerationMode
from synthner.demo.stages import build_stages
from synthner.supervisor import ProcessFailed, ProcessSpec, Supervisor, module_argv, settings_env
from synthner_annotator.settings import AnnotatorSettings
from synthner_generator.settings import GeneratorSettings
from synthner_shared.contracts import Mention
from synthner_shared.local_llm import free_port
from synthner_shared.messaging import BrokerSettings
from synthner_shared.testing import BrokerProbe
from synthner_trainer.settings import TrainerSettings

PYTHON = sys.executable


def python(code: str) -> list[str]:
    return [PYTHON, "-c", code]


async def test_a_process_that_dies_fails_the_guarded_work_with_its_exit_code_and_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs", grace_s=5)
    await supervisor.start(ProcessSpec("crasher", python("import sys; print('bad settings'); sys.exit(3)")))
    with pytest.raises(ProcessFailed) as failure:
        await supervisor.guard(asyncio.Event().wait())  # work that would never end on its own
    message = str(failure.value)
    assert message == f"the crasher process exited with code 3: see {tmp_path / 'logs' / 'crasher.log'}"
    assert "bad settings" in (tmp_path / "logs" / "crasher.log").read_text()
    assert await supervisor.stop() == {"crasher": 3}


async def test_stop_terminates_then_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs", grace_s=1)
    stubborn = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); signal.pause()"
    await supervisor.start(ProcessSpec("polite", python("import signal; signal.pause()")))
    await supervisor.start(ProcessSpec("stubborn", python(stubborn)))
    # Ready once it printed "up" (it ignores SIGTERM from then on).
    log = supervisor.log_path("stubborn")
    async with asyncio.timeout(60):
        while "up" not in (log.read_text() if log.exists() else ""):  # noqa: ASYNC110 - a file, no event to await
            await asyncio.sleep(0.05)
    codes = await supervisor.stop()
    assert codes == {"polite": -signal.SIGTERM, "stubborn": -signal.SIGKILL}


async def test_a_restarting_process_comes_back_after_sigkill_and_fails_only_when_it_keeps_ending(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor(tmp_path / "logs", grace_s=5, max_restarts=2)
    await supervisor.start(ProcessSpec("worker", python("import signal; signal.pause()"), restart=True))
    first = supervisor.processes["worker"]
    assert supervisor.kill("worker") == first.pid
    async with asyncio.timeout(60):
        while supervisor.processes["worker"] is first:  # noqa: ASYNC110 - the supervisor swaps it; no event to await
            await asyncio.sleep(0.05)
    assert await first.wait() == -signal.SIGKILL
    assert supervisor.restarts == {"worker": 1}
    supervisor.check()  # a restarted process is not a failure

    await supervisor.start(ProcessSpec("crasher", python("raise SystemExit(4)"), restart=True))
    with pytest.raises(ProcessFailed, match=r"the crasher process exited with code 4 \(after 2 restarts\)"):
        await supervisor.guard(asyncio.Event().wait())
    assert supervisor.restarts["crasher"] == 2
    assert "supervisor: exited with code 4; restart 2" in supervisor.log_path("crasher").read_text()
    codes = await supervisor.stop()
    assert codes == {"worker": -signal.SIGTERM, "crasher": 4}
    assert supervisor.restarts == {"worker": 1, "crasher": 2}  # stopping is not restarted


async def test_wait_ready_polls_until_200_and_fails_when_the_process_ends(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "readyz").write_text("ok")
    port = free_port()
    supervisor = Supervisor(tmp_path / "logs", grace_s=5)
    await supervisor.start(
        ProcessSpec("web", [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(served)])
    )
    await supervisor.wait_ready("web", f"http://127.0.0.1:{port}/readyz", 60)
    await supervisor.start(ProcessSpec("gone", python("raise SystemExit(1)")))
    with pytest.raises(ProcessFailed, match="the gone process exited with code 1"):
        await supervisor.wait_ready("gone", f"http://127.0.0.1:{free_port()}/readyz", 60)
    await supervisor.stop()


def test_settings_env_rebuilds_each_stage_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What --processes hands each child: the same settings object the in-process mode builds."""
    cases: tuple[tuple[AnnotatorChoice, GenerationMode], ...] = (
        ("teacher", "prefix"),
        ("lexicon", "label_conditioned"),
        ("llm", "prefix"),
    )
    for annotator, mode in cases:
        options = DemoOptions(
            workdir=Path("run"),
            notes=4,
            quick=True,
            annotator=annotator,
            mode=mode,
            transport="processes",
            lexicon_source=REPO_DATA / "train.jsonl",
            gold=REPO_DATA / "test.jsonl",
            gold_dev=REPO_DATA / "dev.jsonl",
            gold_limit=5,
            epochs=1,
            max_new_tokens=64,
            seed=1,
            api_port=None,
            deadline_s=100,
        )
        llm = SimpleNamespace(base_url="http://127.0.0.1:9/v1", model="smol", parallel=4)
        mentions = [Mention(label="Disease", text="asthma")]
        stages = build_stages(options, llm, mentions, Path("gold.jsonl"), Path("dev.jsonl"))  # type: ignore[arg-type]
        for prefix, built, kind in (
            ("SYNTHNER_GENERATOR_", stages.generator, GeneratorSettings),
            ("SYNTHNER_ANNOTATOR_", stages.annotator, AnnotatorSettings),
            ("SYNTHNER_TRAINER_", stages.trainer, TrainerSettings),
        ):
            with monkeypatch.context() as env:
                for name, value in settings_env(prefix, built).items():
                    env.setenv(name, value)
                assert kind() == built


@pytest.mark.rabbitmq
async def test_serve_generator_runs_the_service_until_sigterm(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    port = free_port()
    env = {
        "AMQP_URL": broker_settings.url.get_secret_value(),
        **settings_env("SYNTHNER_BROKER_", broker_settings),  # the queue arguments the probe declared with
        "SYNTHNER_GENERATOR_HEALTH_PORT": str(port),
        "SYNTHNER_GENERATOR_STATE_DIR": str(tmp_path / "state"),
    }
    supervisor = Supervisor(tmp_path / "logs", grace_s=30)
    await supervisor.start(ProcessSpec("generator", module_argv("synthner", "serve", "generator"), env))
    try:
        await supervisor.wait_ready("generator", f"http://127.0.0.1:{port}/readyz", 120)
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"http://127.0.0.1:{port}/readyz")).json()
        assert health["ready"] is True
    finally:
        codes = await supervisor.stop()
    assert codes == {"generator": 0}, supervisor.log_path("generator").read_text()[-2000:]
    assert "stopped (all in-flight work finished)" in supervisor.log_path("generator").read_text()


@pytest.mark.slow
def test_serve_llm_serves_the_local_model_until_sigterm() -> None:
    process = subprocess.Popen(
        [PYTHON, "-m", "synthner", "serve", "llm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready = ""
        for line in process.stdout:  # the command prints the ready line once the server answers
            if line.startswith("local LLM ready: "):
                ready = line
                break
        assert ready, "synthner serve llm ended without a ready line"
        base_url = ready.split()[3]
        models = httpx.get(f"{base_url}/models", timeout=30).json()
        assert models["data"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        with pytest.raises(httpx.TransportError):  # the llama.cpp server went with it
            httpx.get(f"{base_url}/models", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
