"""Loading a model version for serving, with the int8 gate.

With ``int8`` on, both graphs the trainer shipped in the version folder (``model.onnx``, ``model.int8.onnx``) are
loaded and scored on the configured gold sample;
the int8 model is served only if its strict F1 is at most ``int8_max_f1_drop`` below the fp32 model's, otherwise the
fp32 model is served. The decision and both F1s are reported by ``GET /v1/model`` (``serving`` in the metrics).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthner_ner_api.models import Predictor
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.documents import Document, DocumentEntity, read_documents
from synthner_shared.evaluation import evaluate_spans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizationGate:
    fp32_strict_f1: float
    int8_strict_f1: float
    max_drop: float
    documents: int

    @property
    def int8_served(self) -> bool:
        return self.fp32_strict_f1 - self.int8_strict_f1 <= self.max_drop

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": "int8" if self.int8_served else "fp32",
            "int8_gate": {
                "fp32_strict_f1": round(self.fp32_strict_f1, 4),
                "int8_strict_f1": round(self.int8_strict_f1, 4),
                "max_f1_drop": self.max_drop,
                "gold_documents": self.documents,
                "passed": self.int8_served,
            },
        }


def strict_f1(predictor: Predictor, gold: list[Document], name: str) -> float:
    spans = predictor.annotate([d.text for d in gold])
    predicted = [
        Document(id=d.id, text=d.text, entities=[DocumentEntity(start=s.start, end=s.end, label=s.label) for s in p])
        for d, p in zip(gold, spans, strict=True)
    ]
    return evaluate_spans(gold, predicted, name).strict_micro.f1


class ServingLoader:
    """``Loader`` for :class:`~synthner_ner_api.models.ModelRegistry`: loads a version, applying the int8 gate."""

    def __init__(self, settings: NerApiSettings) -> None:
        self._settings = settings
        self.gates: dict[Path, QuantizationGate] = {}

    def __call__(self, path: Path) -> Predictor:
        from synthner_ner_api.predictor import ServingPredictor  # noqa: PLC0415 - onnxruntime loads with the first model

        settings = self._settings
        fp32 = ServingPredictor.load_for_serving(path, threads=settings.torch_threads, runtime=settings.runtime)
        if not settings.int8:
            return fp32
        if settings.int8_gate_gold is None:
            raise ValueError("int8 serving needs a gold sample for its gate (SYNTHNER_NER_API_INT8_GATE_GOLD)")
        gold = list(read_documents(settings.int8_gate_gold))[: settings.int8_gate_documents]
        int8 = fp32.variant(int8=True)
        gate = QuantizationGate(
            fp32_strict_f1=strict_f1(fp32, gold, "int8-gate"),
            int8_strict_f1=strict_f1(int8, gold, "int8-gate"),
            max_drop=settings.int8_max_f1_drop,
            documents=len(gold),
        )
        self.gates[path] = gate
        log.info(
            "int8 gate for %s: fp32 %.4f, int8 %.4f -> serving %s",
            path.name,
            gate.fp32_strict_f1,
            gate.int8_strict_f1,
            "int8" if gate.int8_served else "fp32",
        )
        chosen = int8 if gate.int8_served else fp32
        chosen.serving_info = {**gate.as_dict(), "runtime": settings.runtime}
        return chosen
