"""Training windows may overlap less than inference windows (``train_stride``): fewer tokens per epoch, same model."""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoTokenizer

from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.ner import EncodedWindow
from synthner_trainer.base_model import default_base_model
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import encode_documents, prepare

WORDS = " ".join(f"word{i}" for i in range(300))
LONG = Document(
    id="long",
    text=f"{WORDS} asthma",
    entities=[DocumentEntity(start=len(WORDS) + 1, end=len(WORDS) + 7, label="Disease")],
)
TAGS = {"O": 0, "B-Disease": 1, "I-Disease": 2}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(default_base_model(), local_files_only=True)


def _windows(tokenizer: Any, train_stride: int | None) -> list[EncodedWindow]:
    config = TrainingConfig(max_length=64, stride=16, train_stride=train_stride)
    return encode_documents([LONG], tokenizer, TAGS, config)


def _tokens_read(windows: list[EncodedWindow]) -> int:
    return sum(len(w.input_ids) - 2 for w in windows)  # without [CLS] and [SEP]


def test_train_stride_zero_reads_fewer_tokens_and_none_follows_the_inference_stride(tokenizer: Any) -> None:
    total = len(tokenizer(LONG.text, add_special_tokens=False)["input_ids"])
    overlapping = _windows(tokenizer, None)
    disjoint = _windows(tokenizer, 0)
    assert _windows(tokenizer, 16) == overlapping  # None: the inference stride's windows, exactly
    assert len(disjoint) < len(overlapping)
    # window starts still snap back to a word start, so a few tokens are read twice
    assert total <= _tokens_read(disjoint) < _tokens_read(overlapping)
    assert _tokens_read(disjoint) - total < _tokens_read(overlapping) - _tokens_read(disjoint)


def test_a_train_stride_as_long_as_the_window_is_refused() -> None:
    docs = [LONG, Document(id="b", text="no asthma", entities=[DocumentEntity(start=3, end=9, label="Disease")])]
    with pytest.raises(ValueError, match="train_stride"):
        prepare(docs, None, default_base_model(), TrainingConfig(max_length=16, stride=4, train_stride=14))
