"""``synthner generate``: submit a generation job to the broker (checked here first, and again by the generator)."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthner_shared.contracts import GenerationRequested
    from synthner_shared.messaging import BrokerSettings

NOTE_TYPES = "discharge_summary,progress_note,radiology_report,referral_letter,medication_list"


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="submit a synthetic-note generation job",
        description=(
            "Submit a generation job (GenerationRequested) to the broker and print its job id.\n\n"
            "example:\n  synthner generate --count 100 --language sv --labels Disease,Drug --mode label_conditioned"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=int, required=True, help="number of notes")
    parser.add_argument("--language", default="en", help="en, es, sv, et (default en)")
    parser.add_argument("--note-types", type=_csv, default=_csv(NOTE_TYPES), help=f"comma list (default {NOTE_TYPES})")
    parser.add_argument("--labels", type=_csv, default=["Disease"], help="entity labels, comma list (default Disease)")
    parser.add_argument("--mode", choices=("free", "label_conditioned", "prefix"), default="free")
    parser.add_argument("--seed", type=int, default=None, help="base seed (default: random, printed)")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--stop", action="append", default=[], help="stop sequence (repeatable)")
    parser.add_argument("--prompt", default="clinical_note", help="template name (default clinical_note)")
    parser.add_argument("--prompt-version", default="v1", help="template version (default v1)")
    parser.add_argument("--lexicon", type=Path, default=None, help='JSON lines {"label": ..., "text": ...}')
    parser.add_argument("--job-id", default=None, help="job id (default: a new one)")
    parser.set_defaults(handler=run_generate)


async def _submit(settings: BrokerSettings, request: GenerationRequested) -> None:
    from synthner_shared.messaging import Broker

    async with Broker(settings, "synthner-cli") as broker:
        await broker.publisher.publish(request)


def run_generate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from synthner_generator.planning import JobRefused, validate
    from synthner_generator.service import job_context
    from synthner_generator.settings import GeneratorSettings
    from synthner_shared.contracts import GenerationRequested, Mention, describe_validation_error
    from synthner_shared.messaging import BrokerSettings, PublishError

    try:
        lexicon = None
        if args.lexicon is not None:
            lines = args.lexicon.read_text(encoding="utf-8").splitlines()
            lexicon = [Mention.model_validate(json.loads(line)) for line in lines if line.strip()]
        request = GenerationRequested.model_validate(
            {
                "job_id": args.job_id or f"job-{uuid.uuid4().hex[:12]}",
                "producer": "synthner-cli",
                "count": args.count,
                "language": args.language,
                "note_types": args.note_types,
                "entity_labels": args.labels,
                "mode": args.mode,
                "seed": args.seed if args.seed is not None else secrets.randbelow(2**31),
                "sampling": {
                    "temperature": args.temperature,
                    "top_p": args.top_p,
                    "max_new_tokens": args.max_new_tokens,
                    "stop": args.stop,
                },
                "prompt": {"name": args.prompt, "version": args.prompt_version},
                "seed_lexicon": lexicon,
            }
        )
        settings = GeneratorSettings()
        if args.mode != "prefix":  # prefix jobs need the real notes, which only the generator holds
            validate(request, job_context(settings))
        asyncio.run(_submit(BrokerSettings(), request))
    except ValidationError as exc:
        print(f"synthner: invalid job: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except (JobRefused, OSError, json.JSONDecodeError) as exc:
        print(f"synthner: {exc}", file=sys.stderr)
        return 2
    except PublishError as exc:
        print(f"synthner: job not submitted: {exc}", file=sys.stderr)
        return 1
    print(f"submitted job {request.job_id}: {request.count} notes, seed {request.seed}")
    return 0
