"""The encoder-model annotator: a Hugging Face token-classification folder labels the note (the Vakili et al. method:
a model trained inside the hospital on a small real gold set annotates the synthetic notes).

Long notes run in overlapping windows and offsets come from the tokenizer's offset mapping (both in
:class:`synthner_shared.ner.predictor.SpanPredictor`, the code the NER API and the trainer's evaluation use too).
torch and transformers are imported only when this backend is built, so an annotator image without the ``model``
extra still runs the LLM and lexicon backends.

Inference is CPU/GPU work: concurrent notes are gathered into one batch (up to ``batch_size``) and run in a worker
thread, so the event loop keeps consuming and acknowledging while the model runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthner_annotator.alignment import AlignmentReport
from synthner_annotator.backends.base import Annotation, AnnotationRequest
from synthner_annotator.errors import ConfigurationError, PermanentAnnotationError
from synthner_annotator.spans import Span
from synthner_shared.contracts import AnnotatorRecord

if TYPE_CHECKING:
    from synthner_shared.ner.encoding import ScoredSpan
    from synthner_shared.ner.predictor import SpanPredictor


class EncoderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["encoder"] = "encoder"
    name: str = Field(default="encoder", min_length=1, max_length=60)
    model_dir: Path = Field(
        description="A local Hugging Face token-classification folder (e.g. one our trainer wrote)."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_length: int | None = Field(
        default=None, ge=8, description="Window length in tokens; default: the one the model was trained with."
    )
    stride: int | None = Field(default=None, ge=0, description="Window overlap in tokens; default: the model's.")
    batch_size: int = Field(default=16, ge=1, le=1024, description="Notes gathered into one forward pass at most.")
    label_map: dict[str, str] = Field(
        default_factory=dict, description="Model label -> declared label, where the two sets name them differently."
    )


def load_predictor(settings: EncoderSettings) -> SpanPredictor:
    """The model folder as a :class:`SpanPredictor`; a clear :class:`ConfigurationError` when it cannot serve."""
    try:
        from synthner_shared.ner.predictor import ModelFolderError, SpanPredictor  # noqa: PLC0415 - torch only here
    except ImportError as exc:
        raise ConfigurationError(
            "the encoder backend needs torch and transformers: install synthner-annotator[model]"
        ) from exc
    options = {key: value for key, value in (("max_length", settings.max_length), ("stride", settings.stride)) if value}
    try:
        return SpanPredictor.load(settings.model_dir, device=settings.device, **options)
    except ModelFolderError as exc:
        raise ConfigurationError(str(exc)) from exc


class _Batcher:
    """Gathers the texts of concurrent ``annotate`` calls into batches for one model, run one at a time in a thread."""

    def __init__(self, predictor: SpanPredictor, batch_size: int) -> None:
        self.predictor = predictor
        self.batch_size = batch_size
        self.pending: list[tuple[str, asyncio.Future[list[ScoredSpan]]]] = []
        self.running: asyncio.Task[None] | None = None

    async def predict(self, text: str) -> list[ScoredSpan]:
        future: asyncio.Future[list[ScoredSpan]] = asyncio.get_running_loop().create_future()
        self.pending.append((text, future))
        if self.running is None or self.running.done():
            self.running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size :]
            texts = [text for text, _ in batch]
            try:
                results = await asyncio.to_thread(self._predict, texts)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller, which raises it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), spans in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(spans)

    def _predict(self, texts: Sequence[str]) -> list[list[ScoredSpan]]:
        return self.predictor.predict_scored(texts)


class EncoderAnnotator:
    def __init__(
        self, settings: EncoderSettings, labels: Sequence[str], predictor: SpanPredictor | None = None
    ) -> None:
        self.settings = settings
        self.predictor = predictor or load_predictor(settings)
        self.label_map = {label: settings.label_map.get(label, label) for label in self.predictor.labels}
        outside = sorted(set(self.label_map.values()) - set(labels))
        if outside:
            raise ConfigurationError(
                f"the model at {settings.model_dir} predicts labels outside the label set: {outside}"
                " (map them with label_map)"
            )
        self.batcher = _Batcher(self.predictor, settings.batch_size)

    @property
    def name(self) -> str:
        return self.settings.name

    def record(self) -> AnnotatorRecord:
        return AnnotatorRecord(backend="encoder", model=self.settings.model_dir.name[:300])

    def usage(self) -> dict[str, dict[str, float]]:
        return {}

    async def aclose(self) -> None:
        return None

    async def annotate(self, request: AnnotationRequest) -> Annotation:
        try:
            predicted = await self.batcher.predict(request.text)
        except Exception as exc:
            raise PermanentAnnotationError(f"model inference failed: {type(exc).__name__}") from exc
        # The score (mean probability of the span's decoded word tags) lets a consumer drop uncertain spans or notes.
        spans = [
            Span(s.start, s.end, self.label_map[s.label], score=round(s.score, 4), source=self.name) for s in predicted
        ]
        report = AlignmentReport(spans=spans, proposed=len(spans))
        return Annotation(spans=spans, report=report, record=self.record())
