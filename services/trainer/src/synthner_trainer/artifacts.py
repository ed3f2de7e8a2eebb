"""What a trained model version holds besides its weights: metrics, dataset manifest, label set, model card, and the
check that the ONNX shipped for serving (:mod:`synthner_shared.ner.onnx`) predicts what the torch weights do."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from synthner_shared.contracts import DatasetManifest, EvaluationResult
from synthner_shared.ner.onnx import ONNX_FILE, ONNX_INT8_FILE, OnnxSpanPredictor
from synthner_shared.ner.predictor import SpanPredictor
from synthner_trainer.settings import TrainingConfig


def _table(results: Sequence[EvaluationResult]) -> str:
    lines = [
        "| evaluation set | documents | strict P | strict R | strict F1 | partial F1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.strict_micro
        lines.append(
            f"| {r.dataset} | {r.documents} | {s.precision:.4f} | {s.recall:.4f} | {s.f1:.4f} "
            f"| {r.partial_micro.f1:.4f} |"
        )
    return "\n".join(lines)


def model_card(
    *,
    version: str,
    base_model: str,
    labels: Sequence[str],
    manifest: DatasetManifest,
    metrics: Sequence[EvaluationResult],
    config: TrainingConfig,
    gate_reason: str | None,
) -> str:
    """The README.md of a model version (no document text in it)."""
    per_label = []
    for result in metrics:
        for label, scores in sorted(result.strict_per_label.items()):
            per_label.append(f"| {result.dataset} | {label} | {scores.f1:.4f} | {scores.support} |")
    label_counts = ", ".join(f"{label}: {count}" for label, count in manifest.label_counts.items()) or "none"
    return f"""# synthner token-classification model {version}

- **Base model:** `{Path(base_model).name}` (fine-tuned with `AutoModelForTokenClassification`)
- **Labels (IOB2):** {", ".join(labels)}
- **Training data:** dataset version `{manifest.version}`, {manifest.document_count} documents
  (content hash `{manifest.content_hash[:16]}…`), annotators: {", ".join(manifest.annotators) or "n/a"};
  entity counts: {label_counts}
- **Hyper-parameters:** {config.model_dump_json()}
- **Promotion gate:** {gate_reason or "not gated (trained from the command line)"}

## Metrics

Entity level; strict = seqeval IOB2 strict mode over character spans, partial = overlap matching.

{_table(metrics)}

| evaluation set | label | strict F1 | support |
|---|---|---|---|
{chr(10).join(per_label)}

## Use

Load with `transformers.pipeline("token-classification", model=DIR, aggregation_strategy="first")`, or, for whole
documents of any length with character offsets, `synthner_shared.ner.predictor.SpanPredictor.load(DIR)`: the same
windows, sub-token policy and decoding (best valid IOB2 path, with the CRF's learned tag transitions where the model
was trained with one, and the `O` bias and the abbreviation step chosen on dev) the model was trained and scored
with, read from `encoding.json`. The plain pipeline decodes each token alone, without any of these. The NER API
serves the ONNX graphs shipped beside the weights (`model.onnx`, fp32, and `model.int8.onnx`, int8 dynamic
quantisation, listed with their SHA-256 in `onnx.json`) on ONNX Runtime, with the same decoding:
`synthner_shared.ner.onnx.OnnxSpanPredictor.load(DIR)`.

## Intended use and limits

Clinical named-entity recognition for the label set above, in the language and note types of the training data.
Trained on synthetic notes annotated automatically: annotation quality bounds model quality. Scores on the synthetic
dev split overstate quality on real notes; trust the real gold-set row. Entity boundaries inside a word widen to the
word. Not a medical device; do not use for clinical decisions without validation on your own data.
"""


def write_metadata(
    folder: Path,
    *,
    version: str,
    base_model: str,
    labels: Sequence[str],
    manifest: DatasetManifest,
    metrics: Sequence[EvaluationResult],
    config: TrainingConfig,
    gate_reason: str | None = None,
    extra: dict[str, object] | None = None,
) -> None:
    """metrics.json, dataset_manifest.json, labels.json and README.md in a model folder."""
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "version": version,
                "metrics": [m.model_dump(mode="json") for m in metrics],
                "hyperparameters": config.model_dump(mode="json"),
                **(extra or {}),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    (folder / "dataset_manifest.json").write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    (folder / "labels.json").write_text(json.dumps(list(labels)), encoding="utf-8")
    (folder / "README.md").write_text(
        model_card(
            version=version,
            base_model=base_model,
            labels=labels,
            manifest=manifest,
            metrics=metrics,
            config=config,
            gate_reason=gate_reason,
        ),
        encoding="utf-8",
    )


def write_folder_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Write a folder with ``write(tmp)`` beside ``target`` and rename it into place; ``target`` must not exist."""
    if target.exists():
        raise FileExistsError(f"{target} already exists; model folders are never overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


ONNX_TOLERANCE = 1e-3
"""Largest difference of a word's tag log-probability between the shipped fp32 ONNX and the torch weights."""


def verify_shipped_onnx(folder: Path, torch_predictor: SpanPredictor, text: str) -> None:
    """Load the folder's shipped ONNX the way the NER API does (checked against ``onnx.json``, ONNX Runtime, no
    export) and check it against the torch weights on ``text``: the fp32 graph must give the same spans and word
    log-probabilities within :data:`ONNX_TOLERANCE`; the int8 graph, when shipped, must load and predict.
    Raises :class:`ValueError` (or the loader's :class:`~synthner_shared.ner.windowed.ModelFolderError`) if not."""
    expected = torch_predictor.score([text])[0]
    fp32 = OnnxSpanPredictor.load(folder, export_if_missing=False)
    (got,) = fp32.score([text])
    if fp32.decode(got) != torch_predictor.decode(expected):
        raise ValueError(f"the shipped {ONNX_FILE} predicts other spans than the torch weights on the smoke text")
    difference = max(
        (
            abs(a - b)
            for row, other in zip(got.scores, expected.scores, strict=True)
            for a, b in zip(row, other, strict=True)
        ),
        default=0.0,
    )
    if difference > ONNX_TOLERANCE:
        raise ValueError(
            f"the shipped {ONNX_FILE} differs from the torch weights by {difference:.2g} in a log-probability"
            f" (more than {ONNX_TOLERANCE:g})"
        )
    if (folder / ONNX_INT8_FILE).is_file():
        OnnxSpanPredictor.load(folder, int8=True, export_if_missing=False).predict([text])
