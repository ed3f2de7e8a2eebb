"""The demo's options (the command line turned into :class:`DemoOptions`) and its two kinds of failure."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from synthner.demo.progress import ProgressView

LABEL = "Disease"
REPO_DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "ncbi_disease"
"""``../shared/data/ncbi_disease`` beside the repository (the gold sets' usual place)."""

TransportChoice = Literal["auto", "in-process", "broker", "processes"]
GenerationMode = Literal["prefix", "label_conditioned"]
AnnotatorChoice = Literal["teacher", "lexicon", "llm"]
DEFAULT_PREFIX_WORDS = 10
DEFAULT_PASSAGE_WORDS = 80
"""Prefix mode: words of another train note's identifier-free sentences SmolLM2 reads before each prefix. Without
them SmolLM2 as shipped took about half its continuations out of medicine (code, games): with them the teacher found
entities in 90 of 120 notes instead of 63 of 118 (892 entities against 429), and the model on those notes, same
teacher and time, scored dev F1 0.729 against 0.671 (seeds 7 and 8; docs/results.md)."""
DEFAULT_NOTES = 90
"""The notes with passages are longer and take longer to write (120 in about eight minutes on a 2-core EPYC): at 120
the time target left the model 136 s. The first 90 of those notes with the model's full 210 s tied with them on dev
(0.714 against 0.709, same teacher, seeds 7 and 8), and they finish sooner where the CPU is slower."""
DEFAULT_TEMPERATURE = 0.8
TEACHER_SECONDS = 190.0
"""Bound on the teacher's training. Its time comes out of the run's 15 minutes, which the model on the notes gets what
is left of: where the notes finish late (a 2-core EPYC at ~1,800 tokens/s, 120 notes in about six minutes) 300 s left
the model 109 s. At 190 s the teacher scored 0.80 instead of 0.84 on the test split, yet the model trained on its
labels for 219 s scored higher on dev (0.690 against 0.647 with the 300 s teacher and 109 s, 0.669 with it and 219 s;
seeds 7 and 8): docs/results.md."""


class DemoError(RuntimeError):
    """Bad input or an unavailable dependency; the message is one line that says what to do."""

    exit_code = 2


class StageFailed(DemoError):
    """A stage failed or got stuck while running (a process died, the deadline passed)."""

    exit_code = 1


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    notes: int
    quick: bool
    annotator: AnnotatorChoice
    mode: GenerationMode
    transport: TransportChoice
    lexicon_source: Path
    gold: Path
    gold_dev: Path
    gold_limit: int | None
    epochs: float
    max_new_tokens: int
    seed: int
    api_port: int | None
    deadline_s: float
    teacher_seconds: float | None = TEACHER_SECONDS
    """Bound on the teacher's training time (None: its epochs only)."""
    teacher_documents: int | None = None
    """Train the teacher on the first N gold train documents (None: all)."""
    teacher_epochs: float = 5.0
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    temperature: float = DEFAULT_TEMPERATURE
    """SmolLM2's sampling temperature for the notes."""
    prefix_words: int = DEFAULT_PREFIX_WORDS
    """Prefix mode: opening words of a gold train note that SmolLM2 continues (fewer where a word may identify
    someone: :func:`synthner_shared.prefixes.safe_prefix`)."""
    passage_words: int = DEFAULT_PASSAGE_WORDS
    """Prefix mode: words of another gold train note (its sentences without identifiers) read before each prefix
    (0: the prefix alone)."""
    min_entities: int = 0
    """The model trains on the notes with at least this many entities (the trainer's ``min_entities``)."""
    minutes: float | None = None
    """The run's time target: where the stages before it ran long (a slower CPU), the model's training gets less than
    its usual bound so the run ends within it (None: no target)."""
    progress: ProgressView = "off"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=Path("out/demo"), help="where every artifact goes")
    parser.add_argument(
        "--quick", action="store_true", help="CI size: a small teacher, 24 notes, the first 20 test documents"
    )
    parser.add_argument("--notes", type=int, help=f"synthetic notes to generate (default {DEFAULT_NOTES}, quick 24)")
    parser.add_argument(
        "--annotator",
        choices=get_args(AnnotatorChoice),
        default="teacher",
        help="who labels the notes: teacher (default; the encoder fine-tuned on the gold train split, also the"
        " reference printed beside the result), lexicon (gold train mentions matched as written) or llm (SmolLM2)",
    )
    parser.add_argument(
        "--mode",
        choices=get_args(GenerationMode),
        help="how the notes are written: prefix (default; SmolLM2 continues the opening words of gold train notes:"
        " on NCBI dev as good as label_conditioned, and written in two thirds of the time, so the run fits 15"
        " minutes: docs/results.md) or label_conditioned (notes that must name gold train mentions; the quick"
        " run's default: its 24 notes need every entity they can get)",
    )
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=0.5,
        help="share of the teacher's soft labels in the model's loss, 0-1 (with --annotator teacher; default 0.5,"
        " chosen on the NCBI dev split: docs/results.md)",
    )
    parser.add_argument(
        "--distill-temperature",
        type=float,
        default=2.0,
        help="temperature of the teacher's soft labels (default 2, chosen on the NCBI dev split: docs/results.md)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help=f"SmolLM2's sampling temperature for the notes, 0-2 (default {DEFAULT_TEMPERATURE:g})",
    )
    parser.add_argument(
        "--prefix-words",
        type=int,
        default=DEFAULT_PREFIX_WORDS,
        help=f"prefix mode: opening words of a gold train note that SmolLM2 continues, 1-50 (default"
        f" {DEFAULT_PREFIX_WORDS}; cut before any word that may identify someone)",
    )
    parser.add_argument(
        "--passage-words",
        type=int,
        default=DEFAULT_PASSAGE_WORDS,
        help="prefix mode: SmolLM2 reads up to this many words of another gold train note before each prefix, only"
        " its sentences without a word that may identify someone, 0-500 (default"
        f" {DEFAULT_PASSAGE_WORDS}; 0: the prefix alone)",
    )
    parser.add_argument(
        "--min-entities",
        type=int,
        help="train on the notes with at least this many entities (default 1 with the teacher: a note it found none"
        " in has mostly left medicine, and without them the model gained dev F1 in the same time; else 0: every"
        " note)",
    )
    parser.add_argument(
        "--teacher-seconds",
        type=float,
        help=f"time bound on the teacher's training (default {TEACHER_SECONDS:.0f}; quick: none, its 2 epochs on 200"
        " documents)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        help="the run's time target: on a slower CPU the model trains for less than its usual 210 s so that the"
        " run ends within it (default 15; quick: none; 0: none)",
    )
    parser.add_argument(
        "--teacher-documents", type=int, help="train the teacher on the first N gold train documents (quick: 200)"
    )
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--in-process", dest="transport", action="store_const", const="in-process")
    transport.add_argument(
        "--broker",
        dest="transport",
        action="store_const",
        const="broker",
        help="require RabbitMQ (AMQP_URL; default 127.0.0.1:5672)",
    )
    transport.add_argument(
        "--processes",
        dest="transport",
        action="store_const",
        const="processes",
        help="run generator, annotator, trainer and NER API as separate processes over RabbitMQ (requires it)",
    )
    parser.set_defaults(transport="auto")
    parser.add_argument(
        "--lexicon-source",
        type=Path,
        default=REPO_DATA / "train.jsonl",
        help="gold train JSONL: its opening words (or its Disease mentions) seed the notes; the teacher and the"
        " lexicon learn from it",
    )
    parser.add_argument(
        "--gold-dev",
        type=Path,
        default=REPO_DATA / "dev.jsonl",
        help="real gold JSONL the teacher and the model early-stop on (never trained on)",
    )
    parser.add_argument("--gold", type=Path, default=REPO_DATA / "test.jsonl", help="real gold JSONL to score on")
    parser.add_argument("--gold-limit", type=int, help="score on the first N gold documents (quick: 20)")
    parser.add_argument("--epochs", type=float, help="training epochs of the model on the notes (default 10)")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="tokens per note at most (default 400; a longer note keeps its whole sentences)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-port", type=int, help="NER API port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--deadline",
        type=float,
        help="over RabbitMQ: seconds the stages may take in all before the run fails (default 3600, quick 900)",
    )


def progress_view(args: argparse.Namespace) -> ProgressView:
    """Bars on a terminal; plain lines where stdout is a pipe or a file (CI, ``kubectl logs``); none with
    ``--no-progress``."""
    if getattr(args, "show_progress", False):
        return "bars"
    return "off" if getattr(args, "no_progress", False) else "lines"


def options_from(args: argparse.Namespace) -> DemoOptions:
    quick = bool(args.quick)
    notes = args.notes if args.notes is not None else (24 if quick else DEFAULT_NOTES)
    if notes < 2:
        raise DemoError("--notes must be at least 2 (one note is held out for early stopping)")
    if args.deadline is not None and args.deadline <= 0:
        raise DemoError("--deadline must be a positive number of seconds")
    if not 0 <= args.distill_weight <= 1:
        raise DemoError("--distill-weight must be within 0-1")
    if args.distill_temperature <= 0:
        raise DemoError("--distill-temperature must be a positive number")
    if not 0 <= args.temperature <= 2:  # the generation request's own bounds
        raise DemoError("--temperature must be within 0-2")
    if not 1 <= args.prefix_words <= 50:  # the generator's own bounds
        raise DemoError("--prefix-words must be within 1-50")
    if not 0 <= args.passage_words <= 500:  # with 400 new tokens, within the local LLM's 2,048 tokens of context
        raise DemoError("--passage-words must be within 0-500")
    if args.min_entities is not None and args.min_entities < 0:
        raise DemoError("--min-entities must be 0 or more")
    if args.teacher_seconds is not None and args.teacher_seconds <= 0:
        raise DemoError("--teacher-seconds must be a positive number of seconds")
    if args.minutes is not None and args.minutes < 0:
        raise DemoError("--minutes must be 0 (no target) or a positive number")
    if args.teacher_documents is not None and args.teacher_documents < 2:
        raise DemoError("--teacher-documents must be at least 2")
    return DemoOptions(
        workdir=args.workdir,
        notes=notes,
        quick=quick,
        annotator=args.annotator,
        mode=args.mode or ("label_conditioned" if quick else "prefix"),
        transport=args.transport,
        lexicon_source=args.lexicon_source,
        gold=args.gold,
        gold_dev=args.gold_dev,
        gold_limit=args.gold_limit if args.gold_limit is not None else (20 if quick else None),
        # A few dozen notes give few optimiser steps: every epoch is short, so the quick run trains as long.
        epochs=args.epochs if args.epochs is not None else 10.0,
        # SmolLM2 often writes past 320 tokens; such a note is cut after its last whole sentence.
        max_new_tokens=args.max_new_tokens or 400,
        seed=args.seed,
        api_port=args.api_port,
        deadline_s=args.deadline if args.deadline is not None else (900.0 if quick else 3600.0),
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
        temperature=args.temperature,
        prefix_words=args.prefix_words,
        passage_words=args.passage_words,
        # The quick teacher is bounded by its size, not by time: on a busy or slow CPU a 60-second teacher learnt
        # nothing (F1 0), and the run with it.
        teacher_seconds=(
            args.teacher_seconds if args.teacher_seconds is not None else (None if quick else TEACHER_SECONDS)
        ),
        teacher_documents=args.teacher_documents if args.teacher_documents is not None else (200 if quick else None),
        teacher_epochs=2.0 if quick else 5.0,
        min_entities=args.min_entities if args.min_entities is not None else int(args.annotator == "teacher"),
        # The quick run is sized for CI, where a busy machine must not cut its small model's training short.
        minutes=(args.minutes if args.minutes is not None else (None if quick else 15.0)) or None,
        progress=progress_view(args),
    )
