"""What keeping the first layers' feed-forward blocks fp32 in the int8 graph buys and costs, in one run.

The trainer's int8 graph (``model.int8.onnx``) leaves the up and down projections of the first
``INT8_FP32_FFN_LAYERS`` encoder layers fp32 (:func:`synthner_shared.ner.onnx.quantize_int8`). This script
re-quantises a model folder's shipped ``model.onnx`` with 0, 1, 2, ... such layers (``--layers``), serves each as the
NER API does (one window per pass), and prints per variant: documents/s (all variants timed chunk by chunk in turn,
so a machine's changing load weighs on all alike), strict F1 on the file's gold entities, the drop against fp32, the
share of fp32's entities it reproduces exactly (agreement, less noisy than F1), and the mean KL divergence of its token
distributions from fp32's on the documents' first windows. The last line:
``f1_drop_int8=… f1_drop_all_int8=… kl_ratio=… speed_ratio=… int8_vs_fp32=…`` for the default against everything
int8 (``kl_ratio``: default KL / all-int8 KL; ``speed_ratio``: default docs/s / all-int8 docs/s; ``int8_vs_fp32``:
default docs/s / fp32 docs/s).

    python benchmarks/int8_fp32_layers.py --model DIR --docs ../shared/data/ncbi_disease/dev.jsonl [--layers 0,1,2,3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ner_api_throughput import agreement, cpu_line, run_ours, strict_f1, timed_together

from synthner_ner_api.predictor import ServingPredictor
from synthner_shared.documents import read_documents
from synthner_shared.ner.onnx import (
    INT8_FP32_FFN_LAYERS,
    ONNX_FILE,
    ONNX_INT8_FILE,
    ONNX_MANIFEST,
    manifest_entry,
    quantize_int8,
)
from synthner_shared.offline import stay_offline


def requantised_copy(model: Path, target: Path, fp32_ffn_layers: int) -> Path:
    """A copy of ``model`` whose ``model.int8.onnx`` keeps ``fp32_ffn_layers`` feed-forward blocks fp32, listed in its
    ``onnx.json`` so the NER API's loader accepts it."""
    shutil.copytree(model, target, ignore=shutil.ignore_patterns(ONNX_INT8_FILE, "*.safetensors", "*.bin"))
    kept = quantize_int8(model / ONNX_FILE, target / ONNX_INT8_FILE, fp32_ffn_layers=fp32_ffn_layers)
    manifest = json.loads((target / ONNX_MANIFEST).read_text(encoding="utf-8"))
    manifest["int8"] = {"method": "requantised by benchmarks/int8_fp32_layers.py", "fp32_nodes": kept}
    manifest["files"][ONNX_INT8_FILE] = manifest_entry(target / ONNX_INT8_FILE)
    (target / ONNX_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


def first_windows(predictor: ServingPredictor, texts: Sequence[str]) -> list[list[int]]:
    """Each text's first window of token ids, as the tagger builds it (special tokens included)."""
    tagger = predictor.tagger
    return [
        [
            *tagger.special.prefix,
            *tagger.tokenizer(text, add_special_tokens=False, truncation=True, max_length=tagger.window)["input_ids"],
            *tagger.special.suffix,
        ]
        for text in texts
    ]


def log_probabilities(predictor: ServingPredictor, rows: Sequence[list[int]]) -> np.ndarray:
    return np.concatenate([np.asarray(predictor.tagger.log_probabilities([row]))[0, : len(row)] for row in rows])


def main(argv: list[str]) -> None:
    stay_offline()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model folder with a shipped model.onnx")
    parser.add_argument("--docs", type=Path, required=True, help="gold JSONL file (a dev split)")
    parser.add_argument("--count", type=int, default=100, help="documents (default 100)")
    parser.add_argument("--layers", default="0,1,2,3", help="numbers of fp32 feed-forward layers to compare")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    args = parser.parse_args(argv)
    if not (args.model / ONNX_FILE).is_file():
        parser.error(f"{args.model} ships no {ONNX_FILE}: train it with the current trainer")
    counts = sorted({int(n) for n in args.layers.split(",")} | {0, INT8_FP32_FFN_LAYERS})
    print(cpu_line(), flush=True)
    gold = list(read_documents(args.docs))[: args.count]
    texts = [d.text for d in gold]
    print(f"{len(texts)} documents from {args.docs.name}; default fp32 feed-forward layers: {INT8_FP32_FFN_LAYERS}")

    fp32 = ServingPredictor.load_for_serving(args.model, threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="int8-layers-") as scratch:
        int8 = {
            n: ServingPredictor.load_for_serving(
                requantised_copy(args.model, Path(scratch) / f"ffn{n}", n), int8=True, threads=args.threads
            )
            for n in counts
        }
        variants = {"fp32": run_ours(fp32)} | {f"int8-ffn{n}": run_ours(p) for n, p in int8.items()}
        rates, outputs = timed_together(variants, texts)
        rows = first_windows(fp32, texts)
        reference = log_probabilities(fp32, rows)
        kl = {}
        for n, predictor in int8.items():
            quantised = log_probabilities(predictor, rows)
            kl[n] = float((np.exp(reference) * (reference - quantised)).sum(-1).mean())
    f1 = {name: strict_f1(gold, spans) for name, spans in outputs.items()}
    print(f"fp32         {rates['fp32']:6.1f} docs/s  strict F1 {f1['fp32']:.4f}")
    for n in counts:
        name = f"int8-ffn{n}"
        print(
            f"{name:12s} {rates[name]:6.1f} docs/s  strict F1 {f1[name]:.4f}  drop {f1['fp32'] - f1[name]:+.4f}  "
            f"agreement with fp32 {agreement(outputs[name], outputs['fp32']):.4f}  KL {kl[n]:.5f}",
            flush=True,
        )
    default, everything = f"int8-ffn{INT8_FP32_FFN_LAYERS}", "int8-ffn0"
    print(
        f"f1_drop_int8={f1['fp32'] - f1[default]:.4f} f1_drop_all_int8={f1['fp32'] - f1[everything]:.4f} "
        f"kl_ratio={kl[INT8_FP32_FFN_LAYERS] / kl[0]:.2f} speed_ratio={rates[default] / rates[everything]:.2f} "
        f"int8_vs_fp32={rates[default] / rates['fp32']:.2f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
