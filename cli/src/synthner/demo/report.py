"""What a finished demo leaves behind: the annotated notes, ``sample.json``, ``summary.json`` and ``report.html``
with its PNG figures, the paths of all of them printed, and the last line."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from synthner.demo.options import DemoOptions
from synthner.demo.probe import Sample
from synthner.demo.stages import Stages
from synthner.demo.teacher import Teacher
from synthner.demo.transports import TrainingReport
from synthner.figures import PREFIX, FiguresUnavailable, write_figures
from synthner.local_pipeline import PipelineRun, Transport
from synthner.report import ReportData, SampleNote, render
from synthner.study.privacy import TrainReference
from synthner_shared.contracts import DocumentAnnotated, ModelPublished
from synthner_shared.documents import Document, DocumentEntity, read_documents, write_documents
from synthner_shared.files import write_text_atomic
from synthner_shared.messaging import BrokerSettings


@dataclass(frozen=True)
class DemoRun:
    """Everything a finished run reports."""

    transport: Transport
    broker: BrokerSettings | None
    llm_file: str
    """The LLM's model file name."""
    mentions: int
    """Unique lexicon mentions the notes were seeded with."""
    gold_path: Path
    stages: Stages
    run: PipelineRun
    training: TrainingReport
    published: ModelPublished
    sample: Sample
    teacher: Teacher | None = None
    """The gold-trained annotator and reference (``--annotator teacher``)."""


def samples_from(run: PipelineRun, limit: int = 3) -> list[SampleNote]:
    # The notes with the most entities show the annotation best; the counts table gives the whole picture.
    documents = sorted(run.of(DocumentAnnotated), key=lambda d: -len(d.entities))
    return [
        SampleNote(
            f"note {d.note_id[:12]} ({d.language}, {len(d.text)} characters, {len(d.entities)} entities)",
            d.text,
            [(e.start, e.end, e.label) for e in d.entities],
        )
        for d in documents[:limit]
    ]


def write_notes(path: Path, run: PipelineRun) -> int:
    documents = [
        Document(
            id=d.note_id,
            text=d.text,
            entities=[DocumentEntity(start=e.start, end=e.end, label=e.label) for e in d.entities],
        )
        for d in run.of(DocumentAnnotated)
    ]
    return write_documents(path, documents)


@dataclass(frozen=True)
class Memorisation:
    """Vakili's memorisation figures of the synthetic notes against the gold train notes, and of real held-out notes
    (the gold dev split) beside them: real text's own overlap, the bar a synthetic corpus should stay under."""

    synthetic: dict[str, float]
    real_heldout: dict[str, float]

    @classmethod
    def measure(cls, train: Sequence[str], synthetic: Sequence[str], real_heldout: Sequence[str]) -> Memorisation:
        reference = TrainReference.build(train)
        return cls(reference.memorisation(synthetic), reference.memorisation(real_heldout))

    def rows(self) -> list[tuple[str, str]]:
        s, r = self.synthetic, self.real_heldout
        return [
            (
                "word 5-gram / 8-gram recall in the train notes (real dev notes)",
                f"{s['ngram5_recall']:.4f} / {s['ngram8_recall']:.4f} ({r['ngram5_recall']:.4f} /"
                f" {r['ngram8_recall']:.4f})",
            ),
            (
                "longest verbatim run of train text, words (real dev notes)",
                f"{s['longest_verbatim_words']:.0f} ({r['longest_verbatim_words']:.0f})",
            ),
        ]


def figure_files(report: ReportData, folder: Path) -> list[tuple[str, str]]:
    """The report's figures as PNG files in ``folder``: (artifact name, path) rows; none without matplotlib."""
    try:
        figures = write_figures(report, folder)
    except FiguresUnavailable as exc:
        print(f"note: no PNG figures: {exc}", file=sys.stderr)
        return []
    return [(f"figure ({figure.stem.removeprefix(PREFIX)}, PNG)", str(figure)) for figure in figures]


def mode_described(options: DemoOptions) -> str:
    if options.mode == "prefix":
        return (
            "prefix (Vakili et al., not adapted): SmolLM2 continues the opening words of a gold train note (at most"
            f" {options.prefix_words})"
            + (
                f", after reading up to {options.passage_words} words of another one's sentences without identifiers"
                if options.passage_words
                else ""
            )
        )
    return "label_conditioned (Tang et al.): each prompt names Disease entities from the lexicon"


def notes_on(options: DemoOptions, done: DemoRun) -> str:
    """What the figures are, in one paragraph for the report."""
    if done.teacher is None:
        return (
            f"SmolLM2-135M writes fluent but medically weak text, and the {options.annotator} annotator labels it"
            " poorly, so the F1 on real abstracts is low: this run shows the loop working, not the method's ceiling."
        )
    seeded = (
        f"continuing at most {options.prefix_words} opening words of gold train notes"
        + (
            f" after up to {options.passage_words} words of another's sentences without identifiers: the prefixes and"
            " what SmolLM2 copied of those sentences (the 5-gram recall) are the real text that reached the student"
            if options.passage_words
            else ": only those words of real text reached the student"
        )
        if options.mode == "prefix"
        else "label-conditioned on gold train mentions: no real text reached the student"
    )
    return (
        f"The model was trained on synthetic notes only (SmolLM2-135M, {seeded}), labelled by the teacher, an encoder"
        " trained on the real gold train split. The teacher's own F1 is the reference; the gap is what the synthetic"
        " route costs at this size (docs/results.md has the study's larger runs)."
    )


def write_report(options: DemoOptions, done: DemoRun, started: float) -> str:
    """Write the run's artifacts and print where they are; returns the last line, ``f1=<strict micro F1 on the gold
    set> seconds=<wall time>`` (the wall time since ``started``, up to the report)."""
    training, stages = done.training, done.stages
    gold_result = training.metrics[-1]
    f1 = gold_result.strict_micro.f1
    models_dir = stages.trainer.models_dir
    sample_path = options.workdir / "sample.json"
    sample_path.write_text(json.dumps(done.sample, indent=2, ensure_ascii=False), encoding="utf-8")
    notes_path = options.workdir / "notes.jsonl"
    write_notes(notes_path, done.run)
    counts = done.run.counts()
    artifacts = [
        ("synthetic notes with their annotations (JSONL)", str(notes_path)),
        ("generator state (dedup database)", str(options.workdir / "generator")),
        ("trainer dataset store (SQLite)", str(stages.trainer.store_path)),
        ("model store (versions/<v>/, current.json)", str(models_dir)),
        ("published model version", str(training.version_path)),
        ("gold set scored (real NCBI-disease test)", str(done.gold_path)),
        ("NER API key (this run only)", done.sample["api_key_file"]),
        ("sample request and response", str(sample_path)),
        ("run summary (JSON)", str(options.workdir / "summary.json")),
        ("this report", str(options.workdir / "report.html")),
    ]
    broker = done.broker
    configuration: dict[str, str | int | float | bool] = {
        "transport": done.transport
        if broker is None
        else f"{done.transport} (RabbitMQ namespace {broker.namespace}, {broker.redacted_url})",
        "quick": options.quick,
        "LLM": f"{done.llm_file} via llama.cpp server",
        "notes requested": options.notes,
        "mode": mode_described(options),
        "lexicon": f"{done.mentions} unique Disease mentions from {options.lexicon_source.name}",
        "annotator": options.annotator
        if done.teacher is None
        else (
            f"teacher: all-MiniLM-L6-v2 fine-tuned on {done.teacher.documents} real gold documents"
            f" ({options.lexicon_source.name}; {done.teacher.epochs_run} epochs in {done.teacher.seconds:.0f} s at"
            f" {done.teacher.tokens_per_second:.0f} tokens/s), strict F1 {done.teacher.strict_f1:.4f} on the gold set"
        ),
        "base model": str(done.published.base_model),
        "epochs": options.epochs,
        "max new tokens per note": options.max_new_tokens,
        "seed": options.seed,
        "gold": f"{options.gold} ({gold_result.documents} documents)",
        "model version": training.version,
    }
    count_rows: list[tuple[str, int | float | str]] = [
        ("notes requested", counts.requested),
        ("generated (NoteGenerated)", counts.generated),
        ("rejected by quality filters", counts.rejected),
        ("dropped as duplicates", counts.duplicates),
        ("quarantined by the leak gate", counts.quarantined),
        ("generation failed", counts.generation_failed),
        ("annotated (DocumentAnnotated)", counts.annotated),
        ("annotation failed", counts.annotation_failed),
        ("entities in annotated notes", counts.entities),
        (
            "mentions proposed / aligned / dropped",
            f"{counts.mentions_found} / {counts.mentions_aligned} / {counts.mentions_dropped}",
        ),
        ("annotator agreement", "n/a (one annotator)" if counts.agreement is None else f"{counts.agreement:.3f}"),
        (
            f"trained on (notes with ≥ {options.min_entities} entities)" if options.min_entities else "trained on",
            done.published.dataset.document_count,
        ),
    ]
    memorised = Memorisation.measure(
        [d.text for d in read_documents(options.lexicon_source)],
        [d.text for d in done.run.of(DocumentAnnotated)],
        [d.text for d in read_documents(options.gold_dev)],
    )
    count_rows += memorised.rows()
    report = ReportData(
        title="synthner demo report",
        final_line="",  # set once the figures are written, with the wall time
        configuration=configuration,
        counts=count_rows,
        evaluations=training.metrics,
        learning_curve=training.history,
        learning_curve_note=(
            "Over the broker the trainer service runs the training; it records the best epoch in the model folder, "
            "not per-epoch progress. Run with --in-process for the curve."
            if done.transport != "in-process"
            else "No epoch finished."
        ),
        samples=samples_from(done.run),
        artifacts=artifacts,
        notes=[notes_on(options, done)],
    )
    artifacts += figure_files(report, options.workdir)
    # The wall time up to the report, which the last line, report.html and summary.json all carry.
    seconds = time.perf_counter() - started
    reference = "" if done.teacher is None else f" f1_gold={done.teacher.strict_f1:.4f}"
    final_line = f"f1={f1:.4f}{reference} seconds={seconds:.0f}"
    summary = {
        "f1": f1,
        "f1_gold": None if done.teacher is None else done.teacher.strict_f1,
        "seconds": round(seconds),
        "counts": asdict(counts),
        "memorisation": asdict(memorised),
        "metrics": [m.model_dump(mode="json") for m in training.metrics],
        "configuration": {k: str(v) for k, v in configuration.items()},
        "artifacts": dict(artifacts),
    }
    write_text_atomic(options.workdir / "summary.json", json.dumps(summary, indent=2))
    write_text_atomic(
        options.workdir / "report.html", render(replace(report, final_line=final_line, artifacts=artifacts))
    )
    print(
        "\nserve the model again: SYNTHNER_NER_API_AUTH_MODE=api_keys "
        f"SYNTHNER_NER_API_API_KEYS_FILE={options.workdir / 'ner-api' / 'api-keys'} "
        f"SYNTHNER_NER_API_MODEL_STORE={models_dir} SYNTHNER_NER_API_LISTEN_FOR_MODELS=false python -m synthner_ner_api"
    )
    print("\nartifacts:")
    for name, path in artifacts:
        print(f"  {name}: {path}")
    print(
        f"\n{counts.generated} notes generated, {counts.annotated} annotated ({counts.entities} entities),"
        f" {done.published.dataset.document_count} trained on; strict F1 {f1:.4f}, partial F1"
        f" {gold_result.partial_micro.f1:.4f} on {gold_result.documents} gold documents"
    )
    if done.teacher is not None:
        print(
            f"the same encoder trained on the real gold train split (the teacher): strict F1"
            f" {done.teacher.strict_f1:.4f}, partial {done.teacher.partial_f1:.4f}; the synthetic-only model is"
            f" {done.teacher.strict_f1 - f1:.4f} below it"
        )
    (_, recall), (_, longest) = memorised.rows()
    print(
        "memorisation against the train notes (real dev notes in parentheses): word 5-/8-gram recall"
        f" {recall}, longest verbatim run {longest} words"
    )
    return final_line
