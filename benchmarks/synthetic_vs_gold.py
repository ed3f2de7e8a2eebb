"""How close does a model trained only on synthetic notes get to one trained on the real gold?

Runs ``synthner study`` (:mod:`synthner.study`) for one route on any gold files in the document format: the teacher
(the encoder trained on ``--train``, early-stopped on ``--dev``) is the gold reference; the route's synthetic notes,
labelled by the teacher, train a student on their own; both are scored on ``--test``. The last line is
``f1_gold=… f1_synthetic=… gap=… ngram5_recall=… notes=… seconds=…`` (gap = f1_gold - f1_synthetic, strict micro
F1; ngram5_recall: the synthetic notes' word 5-grams found in the training notes; seconds: the route's stages, the
teacher's included, stages reused from an earlier run of the same workdir counted with their recorded time).

    python benchmarks/synthetic_vs_gold.py --train F --dev F --test F [--route vakili] [--notes 400] [--workdir DIR]

Every other option of ``synthner study`` (``--curve 50,100``, ``--min-confidence``, ``--in-process``, ...) is passed
on; ``synthner study --help`` lists them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from synthner.main import main as synthner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="gold training JSONL (teacher, adaptation)")
    parser.add_argument("--dev", required=True, help="gold dev JSONL (early stopping, choices)")
    parser.add_argument("--test", required=True, help="gold test JSONL (scored only)")
    parser.add_argument("--workdir", help="keep (and resume from) the artifacts here (default: a temporary folder)")
    args, rest = parser.parse_known_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="synthetic-vs-gold-")
    print(f"workdir {workdir}", flush=True)
    study = ["study", "--gold-train", args.train, "--gold-dev", args.dev, "--gold-test", args.test]
    return synthner(["--no-progress", *study, "--workdir", str(Path(workdir)), *rest])


if __name__ == "__main__":
    sys.exit(main())
