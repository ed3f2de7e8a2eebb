"""Loading a model version for serving, with the int8 gate.

With ``int8`` on, both graphs the trainer shipped in the version folder (``model.onnx``, ``model.int8.onnx``) are
loaded and scored on the configured gold sample, each pass timed after a one-document warm-up;
the int8 model is served only if its strict F1 is at most ``int8_max_f1_drop`` below the fp32 model's and (with
``int8_only_if_faster``, the default) its pass took no longer than fp32's on this CPU, otherwise the fp32 model is
served: without int8 dot-product instructions (VNNI, AMX) a shallow model's int8 graph can run slower than fp32. The
decision, both F1s and both times are reported by ``GET /v1/model`` (``serving`` in the metrics).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthner_ner_api.models import Predictor
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.documents import Document, DocumentEntity, read_documents
from synthner_shared.evaluation import evaluate_spans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatePass:
    """One graph's pass over the gate's gold sample: its strict F1 and its time (after a warm-up)."""

    strict_f1: float
    seconds: float


@dataclass(frozen=True)
class QuantizationGate:
    fp32: GatePass
    int8: GatePass
    max_drop: float
    documents: int
    only_if_faster: bool = True

    @property
    def f1_passed(self) -> bool:
        return self.fp32.strict_f1 - self.int8.strict_f1 <= self.max_drop

    @property
    def int8_faster(self) -> bool:
        return self.int8.seconds <= self.fp32.seconds

    @property
    def int8_served(self) -> bool:
        return self.f1_passed and (self.int8_faster or not self.only_if_faster)

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": "int8" if self.int8_served else "fp32",
            "int8_gate": {
                "fp32_strict_f1": round(self.fp32.strict_f1, 4),
                "int8_strict_f1": round(self.int8.strict_f1, 4),
                "max_f1_drop": self.max_drop,
                "gold_documents": self.documents,
                "fp32_seconds": round(self.fp32.seconds, 3),
                "int8_seconds": round(self.int8.seconds, 3),
                "only_if_faster": self.only_if_faster,
                "passed": self.int8_served,
            },
        }


def gate_pass(predictor: Predictor, gold: list[Document], name: str) -> GatePass:
    """Score ``predictor`` on ``gold``, timing the pass after one document's warm-up (first-run allocations)."""
    predictor.annotate([gold[0].text])
    started = time.perf_counter()
    spans = predictor.annotate([d.text for d in gold])
    seconds = time.perf_counter() - started
    predicted = [
        Document(id=d.id, text=d.text, entities=[DocumentEntity(start=s.start, end=s.end, label=s.label) for s in p])
        for d, p in zip(gold, spans, strict=True)
    ]
    return GatePass(evaluate_spans(gold, predicted, name).strict_micro.f1, seconds)


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
        if not gold:
            raise ValueError(f"the int8 gate's gold sample {settings.int8_gate_gold} has no documents")
        int8 = fp32.variant(int8=True)
        gate = QuantizationGate(
            fp32=gate_pass(fp32, gold, "int8-gate"),
            int8=gate_pass(int8, gold, "int8-gate"),
            max_drop=settings.int8_max_f1_drop,
            documents=len(gold),
            only_if_faster=settings.int8_only_if_faster,
        )
        self.gates[path] = gate
        log.info(
            "int8 gate for %s: fp32 %.4f in %.2f s, int8 %.4f in %.2f s -> serving %s",
            path.name,
            gate.fp32.strict_f1,
            gate.fp32.seconds,
            gate.int8.strict_f1,
            gate.int8.seconds,
            "int8" if gate.int8_served else "fp32",
        )
        chosen = int8 if gate.int8_served else fp32
        chosen.serving_info = {**gate.as_dict(), "runtime": settings.runtime}
        return chosen
