"""The chaos run's services: their settings, their processes (the specs ``synthner demo --processes`` uses, with
restarts) and the one generation job. No data files: a fixed disease lexicon seeds the notes and the annotators."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from synthner.processes import Stage, broker_env, ner_api_process, stage_process
from synthner.supervisor import ProcessSpec, module_argv
from synthner_annotator.backends.lexicon import LexiconSettings
from synthner_annotator.settings import AnnotatorSettings
from synthner_generator.testing import settings_for
from synthner_shared.contracts import GenerationRequested, Mention, PromptRef, SamplingParameters
from synthner_shared.messaging import BrokerSettings
from synthner_trainer.settings import TrainerSettings, TrainingConfig
from tests.reliability.chaos.records import PROCESS_ENV, RECORDS_ENV
from tests.reliability.chaos.result import ChaosOptions

REPO_ROOT = Path(__file__).resolve().parents[3]
WRAPPER = "tests.reliability.chaos.wrapped"

LABEL = "Disease"
DISEASES = (
    "hypertension",
    "type 2 diabetes",
    "asthma",
    "atrial fibrillation",
    "pneumonia",
    "migraine",
    "heart failure",
    "chronic kidney disease",
    "rheumatoid arthritis",
    "colorectal cancer",
    "epilepsy",
    "cystic fibrosis",
)
"""The seed lexicon of the notes and the lexicon annotator's terms: the run needs no data files."""
NER_API_INSTANCE = "chaos"
API_KEY_NAME = "chaos"


def broker_settings(url: str) -> BrokerSettings:
    """Production limits, with back-off and reconnection short enough for a run of minutes; start-up keeps trying
    through a broker restart."""
    return BrokerSettings(
        url=url,
        namespace="chaos",
        retry_delays_ms=(200, 1_000, 5_000),
        publish_timeout_s=15,
        connect_timeout_s=180,
        reconnect_interval_s=0.5,
        shutdown_grace_s=5,
    )


def trainer_settings(options: ChaosOptions) -> TrainerSettings:
    return TrainerSettings(
        data_dir=options.workdir / "trainer",
        labels=[LABEL],
        base_model=options.base_model,
        dev_fraction=0.2,
        patience=0,
        device="cpu",
        training=TrainingConfig(epochs=options.epochs, batch_size=16, max_length=128, stride=32, learning_rate=3e-4),
    )


def records_dir(options: ChaosOptions) -> Path:
    """Where the stage processes write their processing records."""
    return options.workdir / "records"


def wrapped(spec: ProcessSpec, stage: Stage, options: ChaosOptions, *arguments: str) -> ProcessSpec:
    """The stage's process through the harness's wrapper entry point (:mod:`tests.reliability.chaos.wrapped`): the
    same composition root, with its handlings recorded (and its latency and planted fault)."""
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**spec.env, RECORDS_ENV: str(records_dir(options)), PROCESS_ENV: spec.name, "PYTHONPATH": python_path}
    return dataclasses.replace(spec, argv=module_argv(WRAPPER, stage, *arguments), env=env)


def process_specs(
    options: ChaosOptions, broker: BrokerSettings, llm_url: str, key_file: Path, api_port: int
) -> list[ProcessSpec]:
    """Generator, ``options.annotators`` annotators (competing consumers), trainer and (when the run trains) NER API,
    each restarted by the supervisor whenever it ends; the broker's limits go to every service. The stages run
    through the harness's wrapper entry point, the annotators with ``options.annotate_latency_s`` and the planted
    fault, if any."""
    common = broker_env(broker, limits=True)
    generator = settings_for(
        llm_url,
        options.workdir,
        labels=[LABEL],
        part_size=options.part_size,
        concurrency=options.llm_concurrency,
        entities_per_label=2,
        instance="chaos",
    )
    trainer = trainer_settings(options)
    annotator_arguments = ["--latency", str(options.annotate_latency_s)]
    if options.plant_fault is not None:
        annotator_arguments += ["--fault", options.plant_fault]
    annotators = [
        wrapped(
            stage_process(
                "annotator",
                AnnotatorSettings(
                    labels=[LABEL], annotator=LexiconSettings(terms={LABEL: list(DISEASES)}), producer=f"annotator-{n}"
                ),
                common,
                name=f"annotator-{n}",
                restart=True,
            ),
            "annotator",
            options,
            *annotator_arguments,
        )
        for n in range(1, options.annotators + 1)
    ]
    specs = [
        wrapped(stage_process("generator", generator, common, restart=True), "generator", options),
        *annotators,
        wrapped(stage_process("trainer", trainer, common, restart=True), "trainer", options),
    ]
    if options.train:
        specs.append(
            ner_api_process(
                common,
                key_file=key_file,
                model_store=trainer.models_dir,
                port=api_port,
                instance=NER_API_INSTANCE,
                torch_threads=1,
                restart=True,
            )
        )
    return specs


def generation_job(options: ChaosOptions) -> GenerationRequested:
    return GenerationRequested(
        job_id=f"chaos-{options.seed}",
        producer="synthner-chaos",
        count=options.notes,
        language="en",
        note_types=["discharge_summary", "progress_note"],
        entity_labels=[LABEL],
        mode="label_conditioned",
        seed=options.seed,
        sampling=SamplingParameters(temperature=0.8, top_p=0.95, max_new_tokens=200),
        prompt=PromptRef(name="clinical_note_brief", version="v1"),
        seed_lexicon=[Mention(label=LABEL, text=d) for d in DISEASES],
    )
