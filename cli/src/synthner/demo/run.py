"""The demo from its checks to its last line: inputs checked, transport chosen, workdir prepared, the stages run by
the chosen transport, the model served and asked once, the report written."""

from __future__ import annotations

import shutil
from pathlib import Path

from synthner.demo.options import DemoError, DemoOptions
from synthner.demo.probe import Sample, serve_and_ask
from synthner.demo.progress import CurrentStage
from synthner.demo.report import DemoRun, write_report
from synthner.demo.stages import build_stages, lexicon, write_gold
from synthner.demo.teacher import train_teacher
from synthner.demo.transports import choose_transport, run_in_process, within_deadline
from synthner.figures import PREFIX
from synthner.local_pipeline import Transport
from synthner.logfile import logs_to
from synthner_shared.local_llm import LocalLLMError, check_port_free, local_llm
from synthner_shared.messaging import BrokerSettings, BrokerUnavailable

OWNED = (
    "generator",
    "annotator",
    "trainer",
    "ner-api",
    "gold",
    "teacher",
    "logs",
    "notes.jsonl",
    "report.html",
    "summary.json",
    "sample.json",
    "demo.log",
)
"""What a run writes under its workdir; a new run replaces exactly these (and the ``figure-*.png`` files)."""
LLM_PARALLEL = 4
"""Notes llama-server writes at once: on 2 cores, 1.3x the tokens/s of one slot (8 slots: no more)."""


def check_inputs(options: DemoOptions) -> None:
    inputs = [("lexicon-source", options.lexicon_source), ("gold", options.gold)]
    if options.annotator == "teacher":
        inputs.append(("gold-dev", options.gold_dev))
    for flag, path in inputs:
        if not path.is_file():
            raise DemoError(
                f"{path} not found: put the NCBI-disease JSONL files in ../shared/data/ncbi_disease "
                f"or pass --{flag} FILE"
            )
    if options.api_port is not None:
        try:
            check_port_free(options.api_port)
        except LocalLLMError as exc:
            raise DemoError(f"{exc} (--api-port)") from None


def prepare_workdir(workdir: Path) -> None:
    """Create the workdir; remove what an earlier run wrote there (and nothing else)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for path in [*(workdir / name for name in OWNED), *workdir.glob(f"{PREFIX}*.png")]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


async def run_demo(options: DemoOptions, started: float) -> str:
    """Run the demo; returns the last line, ``f1=<strict micro F1 on the gold set> seconds=<wall time>``. Prints
    progress and where each artifact is."""
    check_inputs(options)
    transport, broker = await choose_transport(options)
    prepare_workdir(options.workdir)
    # The terminal shows the stages, progress and the summary; every INFO line (one per LLM request and per note)
    # goes to the run's log file.
    with logs_to(options.workdir / "demo.log"):
        return await run_prepared(options, started, transport, broker)


async def run_prepared(
    options: DemoOptions, started: float, transport: Transport, broker: BrokerSettings | None
) -> str:
    """The demo after its checks, with the transport chosen (``broker`` None: in process) and the workdir
    prepared."""
    mentions = lexicon(options.lexicon_source)
    gold_path, dev_path = write_gold(options)
    teacher = train_teacher(options, gold_path) if options.annotator == "teacher" else None
    stage = CurrentStage()
    sample: Sample | None = None
    try:
        async with local_llm(n_threads=2, parallel=LLM_PARALLEL) as llm:
            print(
                f"local LLM: {llm.server} at {llm.base_url} serving {llm.model_path.name}, {llm.parallel} at once",
                flush=True,
            )
            stages = build_stages(options, llm, mentions, gold_path, dev_path, started=started)
            if broker is None:
                run, training = await run_in_process(stages, llm, options.progress)
            else:
                run, training, sample = await within_deadline(
                    options, stage=stage, transport=transport, llm=llm, stages=stages, broker=broker
                )
    except LocalLLMError as exc:
        raise DemoError(str(exc)) from None
    except BrokerUnavailable as exc:
        raise DemoError(f"{exc}: start RabbitMQ or run with --in-process") from None
    if training.published is None:
        raise DemoError(f"model version {training.version} was not published by the gate: see the log above")
    if sample is None:
        sample = await serve_and_ask(options, stages.trainer.models_dir)
    done = DemoRun(
        transport=transport,
        broker=broker,
        llm_file=llm.model_path.name,
        mentions=len(mentions),
        gold_path=gold_path,
        stages=stages,
        run=run,
        training=training,
        published=training.published,
        sample=sample,
        teacher=teacher,
    )
    return write_report(options, done, started)
