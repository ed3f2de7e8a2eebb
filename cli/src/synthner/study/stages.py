"""One route's stages over one workdir (:class:`Study`), each writing its artifact and record atomically."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic_core import to_jsonable_python

from synthner.study.options import (
    MIXED,
    PREFIXED,
    STAGES,
    Counts,
    StageRecord,
    StudyError,
    StudyOptions,
    StudyResult,
)
from synthner.study.privacy import TrainReference
from synthner_shared.files import write_text_atomic

if TYPE_CHECKING:
    from synthner.local_pipeline import PipelineRun
    from synthner_shared.contracts import DocumentAnnotated, Envelope, EvaluationResult, NoteGenerated
    from synthner_shared.documents import Document
    from synthner_shared.messaging import BrokerSettings, Service
    from synthner_trainer.settings import TrainingConfig


log = logging.getLogger(__name__)


def write_json_atomically(path: Path, value: object) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True))


def write_jsonl_atomically(path: Path, lines: Iterable[str]) -> None:
    write_text_atomic(path, "".join(f"{line}\n" for line in lines))


def confident(document: Document, threshold: float) -> bool:
    """True when every span of the document scores at least ``threshold`` (spans without a score count as sure)."""
    scores = ((entity.model_extra or {}).get("score") for entity in document.entities)
    return all(score is None or score >= threshold for score in scores)


def synthetic_document(message: DocumentAnnotated) -> Document:
    """The annotated note as a document of the synthetic corpus: spans with their scores, provenance and annotator."""
    from synthner_shared.documents import Document

    entities = [{"start": e.start, "end": e.end, "label": e.label, "score": e.score} for e in message.entities]
    return Document.model_validate(
        {
            "id": message.note_id,
            "text": message.text,
            "entities": entities,
            "provenance": "synthetic",
            "annotator": message.annotator.backend,
        }
    )


class Study:
    """One route's stages over one workdir; :meth:`run` skips every stage whose artifact already exists."""

    def __init__(self, options: StudyOptions, say: Callable[[str], None] = print) -> None:
        from synthner_shared.documents import read_documents

        self.options = options
        self.workdir = options.workdir
        self.say = say
        self.broker: BrokerSettings | None = None
        """Where the generator's and annotator's stages run (None: in this process); set by :meth:`_connect`."""
        self.transport: str | None = None

        for what, path in (("--gold-train", options.gold_train), ("--gold-dev", options.gold_dev)):
            if not path.is_file():
                raise StudyError(f"{what} {path} not found: give a JSONL document file")
        if not options.gold_test.is_file():
            raise StudyError(f"--gold-test {options.gold_test} not found: give a JSONL document file")
        if options.notes < 10 and options.route != "gold":
            raise StudyError("--notes must be at least 10 (a tenth is held out when the student early-stops on it)")
        self.train = list(read_documents(options.gold_train))
        self.dev = list(read_documents(options.gold_dev))
        self.test = list(read_documents(options.gold_test))
        self.labels = sorted({entity.label for document in self.train for entity in document.entities})
        if not self.labels:
            raise StudyError(f"{options.gold_train} has no entities: the teacher needs labelled gold")

    # --- paths --------------------------------------------------------------------------------------------------

    @property
    def teacher_dir(self) -> Path:
        return self.workdir / "teacher"

    @property
    def route_dir(self) -> Path:
        """The route's own artifacts; the teacher, shared by every route, sits beside them."""
        return self.workdir / self.options.route

    @property
    def adapted_dir(self) -> Path:
        return self.route_dir / "trainer" / "generators" / "adapted"

    @property
    def notes_file(self) -> Path:
        return self.route_dir / "notes.jsonl"

    @property
    def synthetic_file(self) -> Path:
        return self.route_dir / "synthetic.jsonl"

    @property
    def student_variant(self) -> str:
        """Suffix of the student's folder and records: empty for hard labels on every note, else the distillation
        settings, the confidence threshold and the entity floor."""
        options = self.options
        variant = ""
        if options.distill_weight:
            variant += f"-distill-w{options.distill_weight:g}-t{options.distill_temperature:g}"
        if options.min_confidence:
            variant += f"-conf{options.min_confidence:g}"
        if options.min_entities:
            variant += f"-ent{options.min_entities}"
        return variant

    @property
    def student_dir(self) -> Path:
        return self.route_dir / f"student{self.student_variant}"

    def record_path(self, stage: str) -> Path:
        name = f"{stage}{self.student_variant}" if stage in ("student", "curve") else stage
        return (self.workdir if stage == "teacher" else self.route_dir) / "stages" / f"{name}.json"

    # --- running ------------------------------------------------------------------------------------------------

    def stages(self) -> tuple[str, ...]:
        names = STAGES[self.options.route]
        return (*names, "curve") if self.options.curve and self.options.route != "gold" else names

    def run(self) -> StudyResult:
        write_json_atomically(self.route_dir / "options.json", to_jsonable_python(asdict(self.options)))
        records = [self._stage(name) for name in self.stages()]
        return self._result(records)

    def _stage(self, name: str) -> StageRecord:
        path = self.record_path(name)
        if path.is_file():
            record = StageRecord(**json.loads(path.read_text(encoding="utf-8")))
            self.say(f"{name}: done before ({record.seconds:.0f} s), skipped")
            return record
        self.say(f"{name}: running ...")
        started = time.perf_counter()
        counts = getattr(self, f"_{name}")()
        record = StageRecord(name, round(time.perf_counter() - started, 1), counts)
        write_json_atomically(path, asdict(record))
        shown = " ".join(f"{k}={format_figure(v)}" for k, v in counts.items() if not isinstance(v, dict | list))
        self.say(f"{name}: done in {record.seconds:.0f} s {shown}".rstrip())
        return record

    # --- stages -------------------------------------------------------------------------------------------------

    def _training_config(self, *, distill: bool = False) -> TrainingConfig:
        from synthner_trainer.settings import TrainingConfig
        from synthner_trainer.training import fastest_precision

        return TrainingConfig(
            epochs=self.options.epochs,
            learning_rate=self.options.learning_rate,
            batch_size=16,
            max_length=128,
            stride=32,
            seed=self.options.seed,
            precision=fastest_precision(),
            distill_from=self.teacher_dir if distill and self.options.distill_weight > 0 else None,
            distill_weight=self.options.distill_weight,
            distill_temperature=self.options.distill_temperature,
        )

    def _fit(
        self, train: Sequence[Document], dev: Sequence[Document], out: Path | None, *, student: bool = True
    ) -> dict[str, float]:
        """The trainer's training loop into ``out`` (written atomically, with its test scores beside it as
        ``<out>-test.json``; None: kept nowhere), scored on the gold test split. A ``student`` learns the teacher's
        soft labels too when ``distill_weight`` is set."""
        from synthner_shared.evaluation import evaluate_spans
        from synthner_trainer.base_model import default_base_model
        from synthner_trainer.pipeline import write_model_folder
        from synthner_trainer.store import manifest_for
        from synthner_trainer.training import fine_tune, prepare

        base_model = self.options.base_model or default_base_model()
        plan = prepare(train, dev, base_model, self._training_config(distill=student), labels=self.labels)
        result = fine_tune(plan, device="auto", patience=2, max_seconds=self.options.max_train_seconds)
        predicted = result.predictor().predict_documents(self.test)
        scores = evaluate_spans(self.test, predicted, self.options.gold_test.name)
        if out is not None:
            write_model_folder(result, out, manifest_for("files", plan.train, ["study"]), None)
            write_json_atomically(out.parent / f"{out.name}-test.json", scores.model_dump(mode="json"))
        return {
            "train_documents": len(plan.train),
            "dev_documents": len(dev),
            "epochs_run": result.epochs_run,
            "dev_strict_f1": round(result.dev_result.strict_micro.f1, 4),
            "test_strict_f1": round(scores.strict_micro.f1, 4),
            "test_partial_f1": round(scores.partial_micro.f1, 4),
            "tokens_per_s": round(result.tokens_per_second),
        }

    def _teacher(self) -> Counts:
        if self.teacher_dir.exists():
            shutil.rmtree(self.teacher_dir)  # a folder without its stage record is an interrupted run's
        return self._fit(self.train, self.dev, self.teacher_dir, student=False)

    def _adapt(self) -> Counts:
        from synthner_shared.contracts import AdaptationParameters, AdaptationRequested
        from synthner_shared.documents import write_documents
        from synthner_trainer.adaptation import run_adaptation_request
        from synthner_trainer.settings import AdaptationConfig, TrainerSettings

        settings = TrainerSettings(
            data_dir=self.route_dir / "trainer",
            adaptation=AdaptationConfig(
                gguf=True, prefix_words=self.options.prefix_words, samples=self.options.adapt_samples
            ),
        )
        notes = settings.adaptation_notes_dir / "gold-train.jsonl"
        notes.parent.mkdir(parents=True, exist_ok=True)
        write_documents(notes, self.train)  # the trainer reads real notes from its own notes folder only
        if self.adapted_dir.exists():
            shutil.rmtree(self.adapted_dir)
        request = AdaptationRequested(
            correlation_id=f"study-{self.options.route}",
            producer="synthner-study",
            notes=notes.name,
            name=self.adapted_dir.name,
            parameters=AdaptationParameters(
                epochs=self.options.adapt_epochs,
                max_seconds=self.options.adapt_max_seconds,
                max_steps=self.options.adapt_max_steps,
                block_size=self.options.adapt_block_size,
                seed=self.options.seed,
            ),
        )
        event = run_adaptation_request(request, settings)
        return {
            "train_notes": event.train_notes,
            "heldout_notes": event.heldout_notes,
            "steps": event.steps,
            "perplexity_before": round(event.perplexity_before, 2),
            "perplexity_after": round(event.perplexity_after, 2),
            "ngram5_recall_before": round(event.ngram5_recall_before, 4),
            "ngram5_recall_after": round(event.ngram5_recall_after, 4),
        }

    @property
    def chosen_transport(self) -> str:
        """Where the generator's and annotator's stages ran (:meth:`_connect` chose it)."""
        assert self.transport is not None, "the transport is chosen before a stage runs"
        return self.transport

    def _connect(self) -> None:
        """Choose the transport once: RabbitMQ when asked for, or (``auto``) when it is reachable."""
        if self.transport is not None:
            return
        from synthner.local_pipeline import broker_reachable
        from synthner_shared.messaging import BrokerSettings

        self.transport = "in-process"
        if self.options.transport == "in-process":
            return
        broker = BrokerSettings()
        if asyncio.run(broker_reachable(broker)):
            self.broker, self.transport = broker, "broker"
        elif self.options.transport == "broker":
            raise StudyError(
                f"RabbitMQ at {broker.redacted_url} is not reachable: start it, set AMQP_URL, or run with --in-process"
            )
        else:
            self.say(f"RabbitMQ at {broker.redacted_url} not reachable: the stages run in this process")

    def _generate(self) -> Counts:
        from synthner_shared.stopping import run_stoppable

        self._connect()
        return run_stoppable(self._generate_async())  # SIGTERM stops the llama.cpp server too

    async def _generate_async(self) -> Counts:
        from synthner.local_pipeline import Routes, run_in_memory
        from synthner.progress import Bar
        from synthner_generator.service import build_generator, generator_service
        from synthner_generator.settings import GeneratorSettings
        from synthner_shared.contracts import (
            GenerationProgress,
            GenerationRequested,
            NoteGenerated,
            PromptRef,
            SamplingParameters,
        )
        from synthner_shared.documents import unique_mentions
        from synthner_shared.local_llm import local_llm
        from synthner_shared.ngrams import NgramReference

        options = self.options
        prefix = options.route in PREFIXED
        adapted = options.route == "vakili"
        state = self.route_dir / "generator"
        if state.exists():
            shutil.rmtree(state)  # dedup state of an interrupted run would count its notes as duplicates
        state.mkdir(parents=True)
        reference = state / "leak_reference.npz"
        if adapted:
            shutil.copyfile(self.adapted_dir / "leak_reference.npz", reference)
        else:
            NgramReference.build([d.text for d in self.train]).save(reference)
        model_path = self.adapted_dir / "model.gguf" if adapted else None
        # The adapted generator continues notes it never trained on; the generator as shipped never saw any, so the
        # gold train notes give its prefixes (the generator cuts each before anything that may identify someone).
        prefix_file = self.adapted_dir / "heldout_prefixes.jsonl" if adapted else options.gold_train
        async with local_llm(model_path=model_path, n_ctx=2048, parallel=options.llm_parallel) as llm:
            settings = GeneratorSettings(
                backend="openai",
                endpoint_url=llm.base_url,  # type: ignore[arg-type]
                endpoint_zone="internal",
                model=llm.model,
                concurrency=llm.parallel,
                request_timeout_s=600,
                llm_attempts=2,
                part_size=10,
                labels=self.labels,
                entities_per_label=3,
                min_chars=100,
                prefix_file=prefix_file if prefix else None,
                prefix_words=options.prefix_words,
                truncated=options.truncated,
                leak_reference=reference,
                state_dir=state,
                instance="study",
            )
            request = GenerationRequested(
                job_id=f"study-{options.route}-{options.seed}",
                producer="synthner-study",
                count=options.notes,
                language="en",
                note_types=["progress_note"] if prefix else ["discharge_summary", "progress_note", "referral_letter"],
                entity_labels=self.labels,
                mode="prefix" if prefix else "label_conditioned",
                seed=options.seed,
                sampling=SamplingParameters(
                    temperature=options.temperature, top_p=options.top_p, max_new_tokens=options.max_new_tokens
                ),
                prompt=PromptRef(name="continuation", version="v1")
                if prefix
                else PromptRef(name="clinical_note_brief", version="v1"),
                seed_lexicon=None if prefix else unique_mentions(self.train),
            )
            bar = Bar(options.notes, "generating notes", enabled=options.progress, unit="note")

            def see(message: Envelope) -> None:
                if isinstance(message, GenerationProgress) and message.event == "part":
                    bar.advance(message.requested)

            async with build_generator(settings) as generator:
                try:
                    if self.broker is None:
                        run = await run_in_memory(request, Routes().add(GenerationRequested, generator.handle), see)
                    else:
                        run = await self._over_broker(
                            lambda broker: [generator_service(broker, settings, generator)],
                            [request],
                            lambda run: run.counts().requested >= request.count,
                            what="generation",
                            deadline_s=600 + 60 * request.count,
                            see=see,
                        )
                finally:
                    bar.close()
        notes: list[NoteGenerated] = run.of(NoteGenerated)
        write_jsonl_atomically(self.notes_file, (note.model_dump_json() for note in notes))
        counts = run.counts()
        return {
            "requested": counts.requested,
            "generated": counts.generated,
            "rejected": counts.rejected,
            "duplicates": counts.duplicates,
            "quarantined": counts.quarantined,
            "failed": counts.generation_failed,
            "llm": "adapted SmolLM2-135M (GGUF q8_0)" if adapted else "SmolLM2-135M-Instruct",
            "llm_server": f"{llm.server}, {llm.parallel} at once",
            "transport": self.chosen_transport,
        }

    def _annotate(self) -> Counts:
        from synthner_shared.stopping import run_stoppable

        self._connect()
        return run_stoppable(self._annotate_async())

    async def _annotate_async(self) -> Counts:
        from synthner.local_pipeline import Routes, run_in_memory
        from synthner.progress import Bar
        from synthner_annotator.backends.encoder import EncoderSettings
        from synthner_annotator.backends.lexicon import LexiconSettings
        from synthner_annotator.factory import build_annotator
        from synthner_annotator.handler import make_handler
        from synthner_annotator.service import build_service
        from synthner_annotator.settings import AnnotatorSettings
        from synthner_shared.contracts import AnnotationFailed, DocumentAnnotated, NoteGenerated

        spec: EncoderSettings | LexiconSettings
        if self.options.annotator == "teacher":
            spec = EncoderSettings(name="teacher", model_dir=self.teacher_dir, device="cpu")
        else:
            spec = LexiconSettings(name="lexicon", document_files=[self.options.gold_train], min_term_chars=3)
        settings = AnnotatorSettings(labels=self.labels, annotator=spec, producer="synthner-study/annotator")
        lines = self.notes_file.read_text(encoding="utf-8").splitlines()
        notes = [NoteGenerated.model_validate_json(line) for line in lines if line.strip()]
        annotator = build_annotator(spec, self.labels)
        bar = Bar(len(notes), "annotating", enabled=self.options.progress, unit="note")

        def see(message: Envelope) -> None:
            if isinstance(message, DocumentAnnotated | AnnotationFailed):
                bar.advance()

        try:
            if self.broker is None:
                handle = make_handler(annotator, settings.labels, settings.producer, settings.max_note_chars)
                produced: list[Envelope] = []
                routes = Routes().add(NoteGenerated, handle)
                for note in notes:
                    run = await run_in_memory(note, routes, see)
                    produced += run.messages
            else:

                def finished(run: PipelineRun) -> bool:
                    return len(run.of(DocumentAnnotated)) + len(run.of(AnnotationFailed)) >= len(notes)

                run = await self._over_broker(
                    lambda broker: [build_service(settings, broker, annotator)],
                    notes,
                    finished,
                    what="annotation",
                    deadline_s=300 + 30 * len(notes),
                    see=see,
                )
                produced = run.messages
        finally:
            bar.close()
            await annotator.aclose()
        annotated = [m for m in produced if isinstance(m, DocumentAnnotated)]
        documents = [synthetic_document(message) for message in annotated]
        write_jsonl_atomically(self.synthetic_file, (d.model_dump_json() for d in documents))
        return {
            "notes": len(notes),
            "documents": len(documents),
            "entities": sum(len(d.entities) for d in documents),
            "failed": sum(isinstance(m, AnnotationFailed) for m in produced),
            "annotator": spec.name,
            "transport": self.chosen_transport,
        }

    async def _over_broker(
        self,
        services: Callable[[BrokerSettings], list[Service]],
        messages: Sequence[Envelope],
        done: Callable[[PipelineRun], bool],
        *,
        what: str,
        deadline_s: float,
        see: Callable[[Envelope], None],
    ) -> PipelineRun:
        """Run the stage's service over RabbitMQ in a fresh namespace (deleted afterwards), publish ``messages`` and
        wait (observing every message the namespace carries) until ``done`` holds."""
        from synthner.local_pipeline import Observer, delete_namespace, new_namespace, running

        assert self.broker is not None
        broker = self.broker.model_copy(update={"namespace": new_namespace()})
        observer = Observer(broker, "study", see)
        try:
            async with running([observer.service, *services(broker)]):
                for message in messages:
                    await observer.service.broker.publisher.publish(message)
                await observer.wait_for(done, deadline_s, what)
            return observer.run
        finally:
            try:
                await delete_namespace(broker, observer)
            except Exception as exc:  # noqa: BLE001 - clean-up must not hide the stage's own outcome
                log.warning("could not delete namespace %s: %s", broker.namespace, type(exc).__name__)

    def _gather(self) -> Counts:
        """The mix route's corpus: every finished route's synthetic documents (same teacher), in route order."""
        lines: list[str] = []
        requested = quarantined = 0
        routes: list[str] = []
        for route in MIXED:
            corpus = self.workdir / route / "synthetic.jsonl"
            generation = self.workdir / route / "stages" / "generate.json"
            if not (corpus.is_file() and generation.is_file()):
                continue
            lines += [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
            generated = json.loads(generation.read_text(encoding="utf-8"))["counts"]
            requested += int(generated["requested"])
            quarantined += int(generated["quarantined"])
            routes.append(route)
        if len(routes) < 2:
            raise StudyError(f"the mix route needs the synthetic notes of two routes in the workdir: run {MIXED} first")
        write_jsonl_atomically(self.synthetic_file, lines)
        return {"requested": requested, "quarantined": quarantined, "routes": "+".join(routes), "documents": len(lines)}

    def _kept_documents(self) -> list[Document]:
        """The synthetic documents that pass the confidence threshold and hold at least ``min_entities`` entities."""
        from synthner_shared.documents import read_documents

        options = self.options
        return [
            d
            for d in read_documents(self.synthetic_file)
            if confident(d, options.min_confidence) and len(d.entities) >= options.min_entities
        ]

    def _student_split(self) -> tuple[list[Document], list[Document]]:
        """The synthetic documents the student trains on, and what it early-stops on."""
        documents = self._kept_documents()
        if len(documents) < 2:
            raise StudyError(f"only {len(documents)} synthetic documents: generate more notes (--notes N)")
        if self.options.student_dev == "gold":
            return documents, self.dev
        cut = max(1, len(documents) // 10)
        return documents[cut:], documents[:cut]

    def _student(self) -> Counts:
        train, dev = self._student_split()
        if self.student_dir.exists():
            shutil.rmtree(self.student_dir)
        return {**self._fit(train, dev, self.student_dir), "synthetic_documents": len(self._kept_documents())}

    def _curve(self) -> Counts:
        """Students on the first n synthetic documents, for each n of ``curve`` below the corpus size (the full
        corpus is the student's own point)."""
        train, dev = self._student_split()
        points: list[dict[str, float]] = []
        for size in sorted(n for n in set(self.options.curve) if n < len(train)):
            fit = self._fit(train[:size], dev, None)
            points.append({"notes": size, **{k: fit[k] for k in ("dev_strict_f1", "test_strict_f1", "epochs_run")}})
        student = json.loads(self.record_path("student").read_text(encoding="utf-8"))["counts"]
        points.append(
            {"notes": len(train), **{k: student[k] for k in ("dev_strict_f1", "test_strict_f1", "epochs_run")}}
        )
        return {"points": points}

    def _privacy(self) -> Counts:
        from synthner_shared.documents import read_documents

        reference = TrainReference.build([d.text for d in self.train])
        figures = reference.memorisation([d.text for d in read_documents(self.synthetic_file)])
        real = reference.memorisation([d.text for d in self.dev])
        if self.options.route == "mix":
            generation = json.loads(self.record_path("gather").read_text(encoding="utf-8"))["counts"]
        else:
            generation = json.loads(self.record_path("generate").read_text(encoding="utf-8"))["counts"]
        finished = max(1, generation["requested"])
        return {
            **{key: round(value, 4) for key, value in figures.items()},
            "ngram5_recall_real_heldout": round(real["ngram5_recall"], 4),
            "ngram8_recall_real_heldout": round(real["ngram8_recall"], 4),
            "longest_verbatim_words_real_heldout": real["longest_verbatim_words"],
            "quarantined_share": round(generation["quarantined"] / finished, 4),
        }

    # --- result -------------------------------------------------------------------------------------------------

    def _scores(self, model: Path) -> EvaluationResult:
        """The test-split scores :meth:`_fit` wrote beside the model folder."""
        from synthner_shared.contracts import EvaluationResult

        path = model.parent / f"{model.name}-test.json"
        return EvaluationResult.model_validate_json(path.read_text(encoding="utf-8"))

    def _result(self, records: list[StageRecord]) -> StudyResult:
        """The route's figures; ``seconds`` is the sum of its stages' recorded times (reused stages included)."""
        teacher = self._scores(self.teacher_dir)
        student = self._scores(self.student_dir) if self.options.route != "gold" else None
        per_label: dict[str, dict[str, float]] = {}
        for label in sorted(teacher.strict_per_label):
            row = {"gold_strict_f1": teacher.strict_per_label[label].f1}
            row["gold_partial_f1"] = teacher.partial_per_label[label].f1
            if student is not None and label in student.strict_per_label:
                row["synthetic_strict_f1"] = student.strict_per_label[label].f1
                row["synthetic_partial_f1"] = student.partial_per_label[label].f1
            per_label[label] = {k: round(v, 4) for k, v in row.items()}
        figures = next((r.counts for r in records if r.name == "privacy"), {})
        privacy: dict[str, float] = {k: v for k, v in figures.items() if isinstance(v, int | float)}
        generated = next((r.counts for r in records if r.name in ("annotate", "gather")), {})
        student_counts = next((r.counts for r in records if r.name == "student"), {})
        documents = student_counts.get("synthetic_documents", generated.get("documents", 0))
        result = StudyResult(
            route=self.options.route,
            f1_gold=teacher.strict_micro.f1,
            partial_f1_gold=teacher.partial_micro.f1,
            f1_synthetic=None if student is None else student.strict_micro.f1,
            partial_f1_synthetic=None if student is None else student.partial_micro.f1,
            stages=records,
            per_label=per_label,
            privacy=privacy,
            notes=documents if isinstance(documents, int) else 0,
            seconds=sum(r.seconds for r in records),
        )
        summary = {**asdict(result), "gap": result.gap, "line": result.line(), "student": self.student_dir.name}
        write_json_atomically(self.route_dir / "summary.json", to_jsonable_python(summary))
        return result


def format_figure(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
