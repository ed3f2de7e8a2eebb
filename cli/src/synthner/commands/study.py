"""``synthner study --route R --gold-train F --gold-dev F --gold-test F``: a synthetic route end to end, measured."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from synthner.study import ROUTES, AnnotatorChoice, StudentDev, Truncated

    parser = subparsers.add_parser(
        "study",
        help="measure a synthetic route: a model trained only on synthetic notes against one trained on real gold",
        description=(
            "Run one route end to end through the services' own stages and score it on the real test split:\n"
            "  gold    the teacher: the encoder fine-tuned on the gold train split (the reference)\n"
            "  vakili  SmolLM2 adapted to the gold train notes continues the opening words of held-out notes;\n"
            "          the teacher labels the notes; a student is trained on the synthetic notes only\n"
            "  prefix  the same without the adaptation: SmolLM2 as shipped continues the opening words of gold\n"
            "          train notes (minutes instead of the adaptation's quarter of an hour on a CPU)\n"
            "  tang    SmolLM2 writes notes about gold train mentions (label-conditioned); the teacher (or the\n"
            "          lexicon) labels them; a student is trained on them only\n"
            "  mix     a student on the synthetic notes of vakili, prefix and tang together (those that finished)\n"
            "The generator's and annotator's stages run as services over RabbitMQ when it is reachable (a fresh\n"
            "namespace, deleted afterwards), else in this process (--in-process forces that).\n"
            "Each stage's artifact goes under --workdir; a rerun skips the stages that finished. Logs go to\n"
            "<workdir>/study.log, never with note text. The last line is\n"
            "`f1_gold=… f1_synthetic=… gap=… ngram5_recall=… notes=… seconds=…`.\n\n"
            "example:\n  synthner study --route vakili --gold-train train.jsonl --gold-dev dev.jsonl "
            "--gold-test test.jsonl --notes 400 --workdir out/study-vakili"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--route", choices=[*ROUTES, "all"], default="vakili", help="all: every route, one teacher, one table"
    )
    parser.add_argument("--gold-train", type=Path, required=True, help="real gold JSONL: the teacher's training set")
    parser.add_argument("--gold-dev", type=Path, required=True, help="real gold JSONL for every choice (early stop)")
    parser.add_argument("--gold-test", type=Path, required=True, help="real gold JSONL that is scored, never tuned on")
    parser.add_argument("--workdir", type=Path, required=True, help="artifacts; a rerun resumes from them")
    parser.add_argument("--notes", type=int, default=400, help="synthetic notes to generate (default 400)")
    parser.add_argument(
        "--annotator", choices=get_args(AnnotatorChoice), default="teacher", help="who labels the notes"
    )
    parser.add_argument("--base-model", type=Path, help="encoder folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--epochs", type=float, default=5.0, help="teacher and student epochs (default 5)")
    parser.add_argument("--max-train-seconds", type=float, default=780.0, help="time budget of each training")
    parser.add_argument(
        "--student-dev",
        choices=get_args(StudentDev),
        default="gold",
        help="what the student early-stops on: the gold dev split (default) or a tenth of the synthetic notes",
    )
    parser.add_argument("--adapt-epochs", type=float, default=2.0, help="epochs of the generator's adaptation")
    parser.add_argument("--adapt-max-seconds", type=float, default=900.0, help="time budget of the adaptation")
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--max-new-tokens", type=int, default=400, help="tokens per synthetic note (default 400)")
    parser.add_argument("--prefix-words", type=int, default=3, help="opening words of a real note (vakili, prefix)")
    parser.add_argument(
        "--truncated",
        choices=get_args(Truncated),
        default="whole_sentences",
        help="a note the LLM ended at --max-new-tokens: keep its whole sentences (default) or reject it",
    )
    parser.add_argument(
        "--llm-parallel",
        type=int,
        default=4,
        help="notes the local LLM writes at once (llama-server's parallel slots; default 4)",
    )
    parser.add_argument(
        "--min-confidence", type=float, default=0.0, help="drop notes where a teacher span scores below this"
    )
    parser.add_argument(
        "--min-entities",
        type=int,
        default=0,
        help="the student leaves out notes with fewer entities than this (default 0: every note; the demo uses 1)",
    )
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=0.5,
        help="share of the teacher's soft labels (token probabilities) in the student's loss, 0-1 (default 0.5, chosen"
        " on NCBI-disease dev; 0: hard spans only)",
    )
    parser.add_argument(
        "--distill-temperature", type=float, default=2.0, help="softmax temperature of the soft labels (default 2)"
    )
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument(
        "--in-process",
        dest="transport",
        action="store_const",
        const="in-process",
        help="chain the generator's and annotator's handlers in this process (default: over RabbitMQ when reachable)",
    )
    transport.add_argument(
        "--broker", dest="transport", action="store_const", const="broker", help="require RabbitMQ (AMQP_URL)"
    )
    parser.set_defaults(transport="auto")
    parser.add_argument(
        "--curve",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=(),
        help="also train students on the first N synthetic notes for each N (e.g. 50,100): the learning curve",
    )
    parser.set_defaults(handler=run_study_command)


def run_study_command(args: argparse.Namespace) -> int:
    from synthner.logfile import logs_to
    from synthner.study import ROUTES, StudyError, StudyOptions, describe, run_routes
    from synthner_shared.stopping import Stopped

    if args.min_entities < 0:
        print("synthner study: --min-entities must be 0 or more", file=sys.stderr)
        return 2
    if args.notes < 1 or args.epochs <= 0 or args.distill_temperature <= 0 or args.llm_parallel < 1:
        print(
            "synthner study: --notes, --epochs, --llm-parallel and --distill-temperature must be positive",
            file=sys.stderr,
        )
        return 2
    if not (0 <= args.min_confidence <= 1 and 0 <= args.distill_weight <= 1):
        print("synthner study: --min-confidence and --distill-weight must be within 0-1", file=sys.stderr)
        return 2
    options = StudyOptions(
        route="gold" if args.route == "all" else args.route,
        gold_train=args.gold_train,
        gold_dev=args.gold_dev,
        gold_test=args.gold_test,
        workdir=args.workdir,
        notes=args.notes,
        annotator=args.annotator,
        base_model=args.base_model,
        seed=args.seed,
        epochs=args.epochs,
        max_train_seconds=args.max_train_seconds,
        student_dev=args.student_dev,
        adapt_epochs=args.adapt_epochs,
        adapt_max_seconds=args.adapt_max_seconds,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        llm_parallel=args.llm_parallel,
        prefix_words=args.prefix_words,
        truncated=args.truncated,
        min_confidence=args.min_confidence,
        min_entities=args.min_entities,
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
        curve=args.curve,
        transport=args.transport,
        progress=bool(getattr(args, "show_progress", False)),
    )
    try:
        with logs_to(args.workdir / "study.log"):
            # The gold route costs nothing more (its teacher is every route's annotator) and is the reference.
            routes = ROUTES if args.route == "all" else tuple(dict.fromkeys(("gold", args.route)))
            results = run_routes(options, routes, say=lambda line: print(line, flush=True))
    except StudyError as exc:
        print(f"synthner study: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:
        print(f"synthner study: {exc} (a rerun resumes after the last finished stage)", file=sys.stderr)
        return exc.exit_code
    for result in results:
        for line in describe(result):
            print(line)
    print(results[-1].line())
    return 0
