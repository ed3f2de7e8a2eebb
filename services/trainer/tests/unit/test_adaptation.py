"""Generator adaptation on CPU with a tiny random causal LM: it learns, writes a complete folder, refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from openai import AsyncOpenAI
from transformers import AutoModelForCausalLM, AutoTokenizer

from synthner_shared.contracts import AdaptationRequested
from synthner_shared.documents import read_documents
from synthner_shared.local_llm import local_llm, smollm2_gguf
from synthner_shared.ngrams import NgramReference, ngram_recall
from synthner_shared.prefixes import MEDDOCAN_DESCRIPTOR_LABELS as DESCRIPTORS
from synthner_shared.prefixes import PREFIX_FILTER
from synthner_trainer import adaptation
from synthner_trainer.adaptation import (
    GGUF_CONVERTER_ENV,
    AdaptationError,
    AdaptationResult,
    GgufExportError,
    adapt,
    load_result,
    model_name,
    pack,
    perplexity,
    run_adaptation_request,
)
from synthner_trainer.settings import AdaptationConfig, TrainerSettings
from synthner_trainer.testing import write_tiny_causal_lm
from synthner_trainer.training import TrainingCancelled

MEDDOCAN = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "meddocan"
NOTES = 24

pytestmark = [
    pytest.mark.skipif(not (MEDDOCAN / "train.jsonl").is_file(), reason="no MEDDOCAN data beside the repo"),
    pytest.mark.timeout(600),
]


@pytest.fixture(scope="module")
def notes() -> list[str]:
    return [document.text for document in read_documents(MEDDOCAN / "train.jsonl")][:NOTES]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory, notes: list[str]) -> Path:
    return write_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny", notes)


def config(**changes: object) -> AdaptationConfig:
    settings = {
        "method": "full",
        "epochs": 2.0,
        "learning_rate": 3e-3,
        "batch_size": 8,
        "block_size": 128,
        "heldout_fraction": 0.15,
        "samples": 3,
        "sample_new_tokens": 24,
        "seed": 5,
    }
    return AdaptationConfig.model_validate({**settings, **changes})


@pytest.fixture(scope="module")
def adapted(tmp_path_factory: pytest.TempPathFactory, notes: list[str], base_model: Path) -> AdaptationResult:
    return adapt(notes, base_model, tmp_path_factory.mktemp("out") / "adapted", config(), device="cpu")


@pytest.mark.slow
def test_full_adaptation_on_meddocan_notes_lowers_held_out_perplexity(adapted: AdaptationResult) -> None:
    metrics = adapted.metrics
    assert metrics.method == "full"
    assert metrics.steps == metrics.planned_steps > 0
    assert metrics.perplexity_after < 0.5 * metrics.perplexity_before
    assert metrics.train_notes + metrics.heldout_notes == NOTES


@pytest.mark.slow
def test_adapted_folder_is_complete_and_loads(adapted: AdaptationResult) -> None:
    out = adapted.out
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "heldout_prefixes.jsonl",
        "leak_reference.npz",
        "metrics.json",
        "model",
    ]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "held-out perplexity" in card
    assert str(adapted.metrics.steps) in card
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["perplexity_after"] == adapted.metrics.perplexity_after
    model = AutoModelForCausalLM.from_pretrained(adapted.model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(adapted.model_dir, local_files_only=True)
    assert model.config.model_type == "llama"
    assert len(tokenizer) == model.config.vocab_size


@pytest.mark.slow
def test_written_reference_is_the_leak_gate_format_of_the_training_notes(
    adapted: AdaptationResult, notes: list[str]
) -> None:
    reference = NgramReference.load(adapted.leak_reference)
    assert reference.n == 8
    assert reference.documents == adapted.metrics.train_notes
    prefixes = [d.text for d in read_documents(adapted.prefix_file)]
    assert len(prefixes) == adapted.metrics.heldout_notes
    # Every training note is fully in the reference; held-out notes (never trained on) only partly, if at all.
    recalls = sorted(ngram_recall(reference, [text]) for text in notes)
    assert recalls[adapted.metrics.heldout_notes :] == [1.0] * adapted.metrics.train_notes
    assert 0 < len(prefixes) <= adapted.metrics.heldout_notes
    assert all(len(p.split()) <= 3 for p in prefixes)


@pytest.mark.slow
def test_held_out_prefixes_carry_no_gold_identifier_of_the_notes(adapted: AdaptationResult) -> None:
    documents = list(read_documents(MEDDOCAN / "train.jsonl"))[:NOTES]
    identifiers = {
        document.text[e.start : e.end]
        for document in documents
        for e in document.entities
        if e.label not in DESCRIPTORS or any(char.isdigit() for char in document.text[e.start : e.end])
    }
    written = list(read_documents(adapted.prefix_file))
    assert all(d.model_extra == {"prefix_filter": PREFIX_FILTER} for d in written)
    words = {word for d in written for word in d.text.split()}
    leaked = [s for s in identifiers if s in words or (" " in s and any(s in d.text for d in written))]
    assert leaked == []


@pytest.mark.slow
def test_metrics_name_the_base_model_without_this_machines_path(adapted: AdaptationResult, base_model: Path) -> None:
    text = (adapted.out / "metrics.json").read_text(encoding="utf-8")
    assert json.loads(text)["base_model"] == base_model.name == adapted.metrics.base_model
    assert str(base_model.parent) not in text
    assert str(base_model.parent) not in (adapted.out / "README.md").read_text(encoding="utf-8")
    assert model_name(Path("/srv/generators/adapted-1/model")) == "adapted-1/model"
    assert model_name(Path("/models/SmolLM2-135M-Instruct.Q8_0.gguf")) == "SmolLM2-135M-Instruct.Q8_0.gguf"


@pytest.mark.slow
def test_a_retried_request_announces_its_finished_folder_instead_of_failing(
    tmp_path: Path, notes: list[str], base_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = TrainerSettings(
        data_dir=tmp_path, generator_base_model=base_model, device="cpu", adaptation=config(samples=1)
    )
    settings.adaptation_notes_dir.mkdir(parents=True)
    (settings.adaptation_notes_dir / "real.jsonl").write_text(
        "".join(json.dumps({"id": f"n{i}", "text": text, "entities": []}) + "\n" for i, text in enumerate(notes)),
        encoding="utf-8",
    )
    request = AdaptationRequested(correlation_id="adapt-1", producer="tests", notes="real.jsonl", name="gen-1")
    first = run_adaptation_request(request, settings)
    assert json.loads((tmp_path / "generators" / "gen-1" / "metrics.json").read_text())["request_id"] == str(
        request.message_id
    )

    # The crash came after the rename and before the ack: the redelivered request must not train again.
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished request was trained again")

    monkeypatch.setattr(adaptation, "adapt", no_training)
    again = run_adaptation_request(request, settings)
    assert again.model_dump(exclude={"message_id", "created_at"}) == first.model_dump(
        exclude={"message_id", "created_at"}
    )
    other = AdaptationRequested(correlation_id="adapt-2", producer="tests", notes="real.jsonl", name="gen-1")
    with pytest.raises(AdaptationError, match="written by another adaptation"):
        run_adaptation_request(other, settings)
    (tmp_path / "generators" / "half").mkdir()
    half = AdaptationRequested(correlation_id="adapt-3", producer="tests", notes="real.jsonl", name="half")
    with pytest.raises(AdaptationError, match="not a finished adaptation folder"):
        run_adaptation_request(half, settings)


def test_ngram_reference_round_trip_keeps_hashes_and_key(tmp_path: Path, notes: list[str]) -> None:
    reference = NgramReference.build(notes[:5], n=5)
    reference.save(tmp_path / "reference.npz")
    loaded = NgramReference.load(tmp_path / "reference.npz")
    assert (loaded.n, loaded.key, loaded.documents) == (5, reference.key, 5)
    assert loaded.hashes.tolist() == reference.hashes.tolist()
    assert ngram_recall(loaded, [notes[0]]) == 1.0


def test_memorisation_recall_finds_a_planted_verbatim_sample(notes: list[str]) -> None:
    reference = NgramReference.build(notes[:10], n=5)
    planted = " ".join(notes[3].split()[40:90])
    fresh = "La paciente refiere cefalea leve desde ayer por la tarde sin otros síntomas acompañantes de interés."
    assert ngram_recall(reference, [planted]) == 1.0
    assert ngram_recall(reference, [fresh]) < 0.2
    mixed = ngram_recall(reference, [planted, fresh])
    assert 0.5 < mixed < 1.0
    assert ngram_recall(reference, ["too short"]) == 0.0


def test_packing_splits_long_notes_into_blocks_without_dropping_tokens() -> None:
    blocks = pack([list(range(10)), list(range(100, 103))], block_size=4, eos_id=999)
    assert [len(b) for b in blocks] == [4, 4, 4, 3]
    assert [t for block in blocks for t in block] == [*range(10), 999, 100, 101, 102, 999]


@pytest.mark.slow
def test_lora_adaptation_writes_the_adapter_and_a_merged_model(
    tmp_path: Path, notes: list[str], base_model: Path
) -> None:
    result = adapt(notes, base_model, tmp_path / "lora", config(method="lora", max_steps=3, samples=1), device="cpu")
    assert result.metrics.method == "lora"
    assert result.metrics.lora_r == 8
    assert result.adapter_dir is not None
    assert (result.adapter_dir / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir, local_files_only=True)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir, local_files_only=True)
    blocks = pack([tokenizer(t)["input_ids"] for t in notes[:2]], 128, tokenizer.eos_token_id)
    assert perplexity(merged, blocks, tokenizer.pad_token_id, torch.device("cpu"), 2) > 1.0


@pytest.mark.parametrize(
    ("texts", "message"),
    [([], "no notes"), (["", "  "], "no notes"), (["one note", "two", "three"], "only 3 non-empty notes")],
)
def test_too_few_notes_are_refused_before_training(
    tmp_path: Path, base_model: Path, texts: list[str], message: str
) -> None:
    with pytest.raises(AdaptationError, match=message):
        adapt(texts, base_model, tmp_path / "out", config(), device="cpu")
    assert not (tmp_path / "out").exists()


def test_notes_shorter_than_one_block_are_refused(tmp_path: Path, base_model: Path) -> None:
    with pytest.raises(AdaptationError, match="less than one block"):
        adapt(["Paciente estable."] * 6, base_model, tmp_path / "out", config(), device="cpu")


def test_a_base_model_that_is_not_a_causal_lm_is_refused(tmp_path: Path, notes: list[str]) -> None:
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(AdaptationError, match="not a causal language model"):
        adapt(notes, encoder, tmp_path / "out", config(), device="cpu")
    with pytest.raises(AdaptationError, match="does not exist"):
        adapt(notes, tmp_path / "missing", tmp_path / "out", config(), device="cpu")


def test_an_existing_output_folder_is_never_overwritten(tmp_path: Path, notes: list[str], base_model: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(AdaptationError, match="already exists"):
        adapt(notes, base_model, tmp_path / "out", config(), device="cpu")


def test_a_cancelled_adaptation_leaves_nothing_behind(tmp_path: Path, notes: list[str], base_model: Path) -> None:
    calls = iter(range(100))
    with pytest.raises(TrainingCancelled):
        adapt(notes, base_model, tmp_path / "out", config(), device="cpu", should_stop=lambda: next(calls) >= 2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
async def test_gguf_export_of_adapted_smollm2_loads_in_the_llama_cpp_server(tmp_path: Path, notes: list[str]) -> None:
    settings = config(
        max_steps=1, batch_size=1, block_size=64, samples=0, learning_rate=1e-5, heldout_fraction=0.15, gguf=True
    )
    result = adapt(notes[:8], smollm2_gguf(), tmp_path / "adapted", settings, device="cpu")
    assert result.gguf == tmp_path / "adapted" / "model.gguf"
    assert "model.gguf" in (result.out / "README.md").read_text(encoding="utf-8")
    assert load_result(result.out).gguf == result.gguf
    async with local_llm(model_path=result.gguf, n_ctx=256) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=120)
        try:
            reply = await client.completions.create(model=server.model, prompt="Paciente de", max_tokens=8, seed=1)
        finally:
            await client.close()
    assert reply.choices[0].text.strip()


@pytest.mark.slow
def test_a_failed_gguf_export_leaves_nothing_behind(tmp_path: Path, notes: list[str], base_model: Path) -> None:
    # llama.cpp's converter knows the tokenizers of published models only, not the test's own tiny one.
    with pytest.raises(GgufExportError, match="pre-tokenizer was not recognized"):
        adapt(notes, base_model, tmp_path / "out", config(max_steps=1, samples=0, gguf=True), device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_gguf_export_without_the_converter_is_refused_before_training(
    tmp_path: Path, notes: list[str], base_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GGUF_CONVERTER_ENV, str(tmp_path / "missing" / "convert_hf_to_gguf.py"))
    with pytest.raises(AdaptationError, match=r"convert_hf_to_gguf\.py, not found"):
        adapt(notes, base_model, tmp_path / "out", config(gguf=True), device="cpu")
    assert not (tmp_path / "out").exists()
