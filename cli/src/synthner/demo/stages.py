"""The demo's inputs (lexicon, gold set) and its stages' settings: the classes each service reads at start-up, filled
from the options once, so every transport runs the same stages."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from synthner.demo.options import LABEL, DemoError, DemoOptions
from synthner.demo.teacher import teacher_folder

if TYPE_CHECKING:
    from synthner_annotator.settings import AnnotatorSettings
    from synthner_generator.settings import GeneratorSettings
    from synthner_shared.contracts import GenerationRequested, Mention
    from synthner_shared.local_llm import LocalLLM
    from synthner_trainer.settings import TrainerSettings, TrainingConfig


@dataclass(frozen=True)
class Stages:
    """The stages' settings, built once from the options (the same classes the services read at start-up)."""

    generator: GeneratorSettings
    annotator: AnnotatorSettings
    trainer: TrainerSettings
    request: GenerationRequested
    """The one generation job of the run."""
    finish_by: float | None = None
    """When the run should end (``time.perf_counter()``; the options' ``minutes`` after its start); None: no target."""


def lexicon(path: Path) -> list[Mention]:
    """Unique Disease mentions of the gold file (case-insensitive), in first-seen order."""
    from synthner_shared.documents import read_documents, unique_mentions

    mentions = unique_mentions(read_documents(path), [LABEL])
    if not mentions:
        raise DemoError(f"{path} has no {LABEL} mentions: pass a --lexicon-source with {LABEL} entities")
    return mentions


def write_gold(options: DemoOptions) -> tuple[Path, Path]:
    """The gold test and dev sets (the first ``gold_limit`` documents of each) under the workdir, named as the trainer
    will report them; returns (test, dev)."""
    return first_documents(options, options.gold), first_documents(options, options.gold_dev)


def first_documents(options: DemoOptions, source: Path) -> Path:
    from synthner_shared.documents import read_documents, write_documents

    documents = list(read_documents(source))
    if options.gold_limit is not None:
        documents = documents[: options.gold_limit]
    if not documents:
        raise DemoError(f"gold set {source} is empty")
    # The trainer names the set after its folder and file: "gold:gold/ncbi_disease-test-first20.jsonl".
    suffix = f"-first{options.gold_limit}" if options.gold_limit is not None else ""
    path = options.workdir / "gold" / f"{source.parent.name}-{source.stem}{suffix}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_documents(path, documents)
    return path


STUDENT_SECONDS = 210.0
"""Bound on the model's training on the notes. Keeps the run within 15 minutes: on a 2-core Xeon (teacher 2,200-2,700
tokens/s) the prefix-mode demo took 934 s at 300 s and 927 s at 240 s (its dev scoring after each epoch is outside the
budget)."""


TRAINING_OVERHEAD_SECONDS = 110.0
"""What the run spends from the training request to its end beside the optimisation its bound counts: loading the
model, dev scoring after every epoch, the decoder's choice, the ONNX export and int8 choice, publishing, serving the
model and asking it once, the report (106 s on the AVX2-only EPYC, 6 epochs scored)."""
MIN_STUDENT_SECONDS = 60.0
"""The model trains at least this long, even where the run then passes its time target."""


def student_seconds(stages: Stages, now: float) -> float:
    """The model's training bound when it is requested at ``now``: :data:`STUDENT_SECONDS`, or what is left of the
    run's time target less :data:`TRAINING_OVERHEAD_SECONDS` (a slower CPU took longer over the teacher and the
    notes), but not under :data:`MIN_STUDENT_SECONDS`."""
    if stages.finish_by is None:
        return STUDENT_SECONDS
    left = stages.finish_by - now - TRAINING_OVERHEAD_SECONDS
    return max(MIN_STUDENT_SECONDS, min(STUDENT_SECONDS, left))


def student_config(options: DemoOptions) -> TrainingConfig:
    """How the model learns the notes: with the teacher's soft labels as well when the teacher labelled them (computed
    once per window: 1.09x the student's tokens/s, benchmarks/soft_label_cache.py)."""
    from synthner_trainer.settings import TrainingConfig
    from synthner_trainer.training import fastest_precision

    distill = options.annotator == "teacher" and options.distill_weight > 0
    # A few dozen short notes give few optimiser steps: small batches and a higher learning rate than the service's
    # default make them count.
    return TrainingConfig(
        epochs=options.epochs,
        batch_size=4,
        learning_rate=3e-4,
        max_length=256,
        stride=64,
        precision=fastest_precision("cpu"),
        distill_from=teacher_folder(options) if distill else None,
        distill_weight=options.distill_weight,
        distill_temperature=options.distill_temperature,
    )


def build_stages(
    options: DemoOptions,
    llm: LocalLLM,
    mentions: Sequence[Mention],
    gold: Path,
    gold_dev: Path,
    *,
    started: float | None = None,
) -> Stages:
    """The stages' settings; ``started`` (``time.perf_counter()`` at the run's start) anchors the options' time
    target (None: no target)."""
    from synthner_annotator.backends.encoder import EncoderSettings
    from synthner_annotator.backends.lexicon import LexiconSettings
    from synthner_annotator.backends.llm import LLMAnnotatorSettings
    from synthner_annotator.endpoint import EndpointSettings
    from synthner_annotator.prompts import PromptSettings
    from synthner_annotator.settings import AnnotatorSettings
    from synthner_generator.settings import GeneratorSettings
    from synthner_shared.contracts import GenerationRequested, PromptRef, SamplingParameters
    from synthner_trainer.settings import TrainerSettings

    prefix = options.mode == "prefix"
    generator = GeneratorSettings(
        backend="openai",
        endpoint_url=llm.base_url,  # type: ignore[arg-type]
        endpoint_zone="internal",
        model=llm.model,
        concurrency=llm.parallel,  # llama-server decodes this many notes at once
        request_timeout_s=600,
        llm_attempts=2,
        part_size=llm.parallel,  # progress (bars, the observer) per part; one part's notes fill the LLM's slots
        labels=[LABEL],
        entities_per_label=3,
        min_chars=120,
        truncated="whole_sentences",  # a note SmolLM2 runs past max_new_tokens keeps its whole sentences
        # Prefix mode: the gold train notes' opening words (the generator cuts each before anything that may identify
        # someone; the LLM as shipped never trained on them).
        prefix_file=options.lexicon_source if prefix else None,
        prefix_words=options.prefix_words,
        # Before each prefix, a passage of another train note (its sentences without identifiers): SmolLM2 as shipped
        # then stays on the subject far more often (docs/results.md).
        passage_words=options.passage_words if prefix else 0,
        state_dir=options.workdir / "generator",
        tracker_db=options.workdir / "generator" / "tracker.sqlite3",
        instance="demo",
    )
    spec: EncoderSettings | LexiconSettings | LLMAnnotatorSettings
    if options.annotator == "teacher":
        spec = EncoderSettings(name="teacher", model_dir=teacher_folder(options), device="cpu")
    elif options.annotator == "lexicon":
        # Terms under 3 characters ("AT" for ataxia telangiectasia) match common words once case is folded.
        spec = LexiconSettings(name="lexicon", document_files=[options.lexicon_source], min_term_chars=3)
    else:
        endpoint = EndpointSettings(
            name="llama-cpp",
            base_url=llm.base_url,
            model=llm.model,
            external=False,
            max_concurrency=llm.parallel,
            structured_output="json_object_schema",
            max_tokens=128,
            timeout_s=600,
            max_attempts=2,
        )
        spec = LLMAnnotatorSettings(endpoint=endpoint, prompt=PromptSettings(name="json_mentions"), malformed_retries=0)
    annotator = AnnotatorSettings(labels=[LABEL], annotator=spec, producer="annotator-demo")
    trainer = TrainerSettings(
        data_dir=options.workdir / "trainer",
        labels=[LABEL],
        gold=gold,
        # Choices on the real dev split (never trained on): a held-out fifth of a hundred notes was too few to choose
        # an epoch or a decoder bias with, and every note now trains.
        dev_gold=gold_dev if options.annotator == "teacher" else None,
        dev_fraction=0.2,
        # With the teacher: notes it found no entity in are mostly ones SmolLM2 took out of medicine (code,
        # arithmetic, games); left out, the model sees the rest twice as often in its time (docs/results.md).
        min_entities=options.min_entities,
        # Early epochs of so small a run score 0 on dev, and stopping on that ended training before the model had
        # learned anything (f1=0.0000). Every epoch runs; the best is kept.
        patience=0,
        device="cpu",
        max_train_seconds=STUDENT_SECONDS,
        training=student_config(options),
    )
    request = GenerationRequested(
        job_id=f"demo-{int(time.time())}",
        producer="synthner-demo",
        count=options.notes,
        language="en",
        note_types=["progress_note"] if prefix else ["discharge_summary", "progress_note", "referral_letter"],
        entity_labels=[LABEL],
        mode=options.mode,
        seed=options.seed,
        sampling=SamplingParameters(temperature=options.temperature, top_p=0.95, max_new_tokens=options.max_new_tokens),
        # Raw continuation (no instruction, after the passage): with the prefix alone, SmolLM2-135M-Instruct as shipped
        # wandered from an abstract's opening words to code, games or arithmetic in about half its notes; still, on
        # NCBI dev the student did as well as on label-conditioned notes (three runs against one) and better than on
        # texts the model was asked to begin with the prefix, and the notes take two thirds of the time to write.
        prompt=PromptRef(name="continuation", version="v1")
        if prefix
        else PromptRef(name="clinical_note_brief", version="v1"),
        seed_lexicon=None if prefix else list(mentions),
    )
    finish_by = started + options.minutes * 60 if started is not None and options.minutes is not None else None
    return Stages(generator, annotator, trainer, request, finish_by)
