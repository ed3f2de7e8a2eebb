"""The study's routes, options, stage records and results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Route = Literal["gold", "vakili", "prefix", "tang", "mix"]
ROUTES: tuple[Route, ...] = ("gold", "vakili", "prefix", "tang", "mix")
MIXED: tuple[Route, ...] = ("vakili", "prefix", "tang")
PREFIXED: tuple[Route, ...] = ("vakili", "prefix")
"""The routes whose notes continue the opening words of real notes (``vakili``: by the adapted generator, from notes
the adaptation held out; ``prefix``: by the generator as shipped, from the gold train notes)."""
"""The routes whose synthetic corpora the ``mix`` route trains one student on (those that finished in the workdir)."""
AnnotatorChoice = Literal["teacher", "lexicon"]
StudentDev = Literal["gold", "synthetic"]
Transport = Literal["auto", "broker", "in-process"]
Truncated = Literal["reject", "whole_sentences"]
"""The generator's ``truncated`` setting (the CLI does not depend on the generator package)."""

STAGES: dict[Route, tuple[str, ...]] = {
    "gold": ("teacher",),
    "vakili": ("teacher", "adapt", "generate", "annotate", "student", "privacy"),
    "prefix": ("teacher", "generate", "annotate", "student", "privacy"),
    "tang": ("teacher", "generate", "annotate", "student", "privacy"),
    "mix": ("teacher", "gather", "student", "privacy"),
}
"""The stages each route runs, in order (the teacher is always trained: it is the reference, and the annotator)."""


Figure = int | float | str
Counts = Mapping[str, Figure | Sequence[Mapping[str, Figure]]]
"""What a stage did: numbers and names (the learning curve: a list of points), as its JSON record holds them."""


class StudyError(RuntimeError):
    """Bad input or a stage that cannot run; the message is one line that says what to do."""


@dataclass(frozen=True)
class StudyOptions:
    route: Route
    gold_train: Path
    gold_dev: Path
    gold_test: Path
    workdir: Path
    notes: int = 400
    annotator: AnnotatorChoice = "teacher"
    base_model: Path | None = None
    """Encoder of the teacher and the student; default all-MiniLM-L6-v2."""
    seed: int = 13
    epochs: float = 5.0
    learning_rate: float = 3e-4
    max_train_seconds: float = 780.0
    """Time budget of each token-classifier training (teacher, student)."""
    student_dev: StudentDev = "gold"
    """What the student early-stops and calibrates on: the gold dev split (choices on dev, never trained on), or a
    held-out tenth of the synthetic corpus (the route that needs no gold at all)."""
    adapt_epochs: float = 2.0
    adapt_max_seconds: float = 900.0
    adapt_max_steps: int | None = None
    adapt_block_size: int | None = None
    """None: the trainer's default (512 tokens)."""
    adapt_samples: int = 8
    """Samples the adaptation generates to measure its memorisation (0: not measured)."""
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 400
    prefix_words: int = 3
    truncated: Truncated = "whole_sentences"
    """A note the LLM ended at ``max_new_tokens``: cut after its last whole sentence, or rejected (``reject``)."""
    llm_parallel: int = 4
    """Notes the local llama.cpp server writes at once (its parallel slots; llama-cpp-python's server: one)."""
    min_confidence: float = 0.0
    """The student leaves out synthetic documents in which any teacher span scores below this (0: keep all); such a
    student's artifacts sit in a folder of their own (``student-conf<C>``)."""
    min_entities: int = 0
    """The student leaves out synthetic documents with fewer entities than this (0: keep all; the trainer's
    ``MIN_ENTITIES``, the demo's ``--min-entities``); its artifacts sit in ``student-ent<N>``."""
    transport: Transport = "auto"
    """How the generator's and annotator's stages run: over RabbitMQ as services (``broker``; ``auto``: when it is
    reachable), or their handlers chained in this process (``in-process``)."""
    distill_weight: float = 0.5
    """Share of the teacher's soft labels (its token probabilities) in the student's loss (0: hard spans only); the
    student's artifacts then sit in a folder of their own (``student-distill-w<W>-t<T>``) beside the plain one.
    0.5 at temperature 2: chosen on NCBI-disease dev (tang route: dev 0.677 hard, 0.703 at T 1, 0.721 at T 2)."""
    distill_temperature: float = 2.0
    curve: tuple[int, ...] = ()
    """Also train students on the first n synthetic documents, for each n (the learning curve over notes)."""
    progress: bool = False


@dataclass
class StageRecord:
    """What one stage did: its wall time and its counts, kept in ``<workdir>/stages/<name>.json``."""

    name: str
    seconds: float
    counts: Counts = field(default_factory=dict)


@dataclass
class StudyResult:
    route: Route
    f1_gold: float
    partial_f1_gold: float
    f1_synthetic: float | None
    partial_f1_synthetic: float | None
    stages: list[StageRecord]
    per_label: dict[str, dict[str, float]]
    privacy: dict[str, float]
    notes: int
    seconds: float

    @property
    def gap(self) -> float | None:
        return None if self.f1_synthetic is None else self.f1_gold - self.f1_synthetic

    def line(self) -> str:
        """The benchmark's last line (``key=value``)."""
        synthetic = "nan" if self.f1_synthetic is None else f"{self.f1_synthetic:.4f}"
        gap = "nan" if self.gap is None else f"{self.gap:.4f}"
        recall = self.privacy.get("ngram5_recall")
        ngram5 = "nan" if recall is None else f"{recall:.4f}"
        return (
            f"f1_gold={self.f1_gold:.4f} f1_synthetic={synthetic} gap={gap} ngram5_recall={ngram5}"
            f" notes={self.notes} seconds={self.seconds:.0f}"
        )
