"""The synthetic-route study: does a model trained only on synthetic notes get close to one trained on real gold?

One route end to end through the services' own stage functions, each stage's artifact written under the workdir
(atomically) so that a rerun skips what already exists:

``teacher``    all-MiniLM-L6-v2 (or ``base_model``) fine-tuned on the gold train split, early-stopped on gold dev —
               the trainer's own training loop; scored on the gold test split it is the **gold** route's figure.
``adapt``      (vakili) the generator's LLM adapted to the gold train notes by the trainer's adaptation job
               (:func:`run_adaptation_request` serving an ``AdaptationRequested``), with a GGUF for llama.cpp.
``generate``   the generator's handler (prefix mode and ``continuation/v1`` against the adapted model served by
               llama.cpp — Vakili et al.; label-conditioned ``clinical_note_brief/v1`` with the gold train mentions
               against SmolLM2 — Tang et al.), the leak gate checking every note against the train notes.
``annotate``   the annotator's handler with the encoder backend loading the teacher (or the lexicon backend).
``student``    the trainer's training loop on the synthetic documents only; scored on the gold test split.
``privacy``    word 5- and 8-gram recall of the synthetic notes against the gold train notes (the same figure for
               real held-out notes beside it), the longest verbatim run, the quarantined share.

Everything is in-process (the handlers chained in memory, as ``synthner demo --in-process`` does). The study never
prints or logs note text; choices are made on the dev split only, the test split is scored, never tuned on.
"""

from synthner.study.options import (
    MIXED,
    ROUTES,
    STAGES,
    AnnotatorChoice,
    Counts,
    Route,
    StageRecord,
    StudentDev,
    StudyError,
    StudyOptions,
    StudyResult,
    Transport,
    Truncated,
)
from synthner.study.overview import RouteRow, describe, overview_rows, report_data, run_routes, write_overview
from synthner.study.privacy import TrainReference, longest_run, memorisation
from synthner.study.stages import Study, confident, synthetic_document

__all__ = [
    "MIXED",
    "ROUTES",
    "STAGES",
    "AnnotatorChoice",
    "Counts",
    "Route",
    "RouteRow",
    "StageRecord",
    "StudentDev",
    "Study",
    "StudyError",
    "StudyOptions",
    "StudyResult",
    "TrainReference",
    "Transport",
    "Truncated",
    "confident",
    "describe",
    "longest_run",
    "memorisation",
    "overview_rows",
    "report_data",
    "run_routes",
    "synthetic_document",
    "write_overview",
]
