"""``encoding.json`` beside a model: what the trainer writes is what every predictor reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthner_shared.ner import TagTransitions
from synthner_shared.ner.predictor import ENCODING_FILE, read_encoding, write_encoding


def test_what_is_written_is_read_back(tmp_path: Path) -> None:
    write_encoding(tmp_path, 128, 32, 0.75, "all", abbreviations=True, identifiers={"phone": "NUMERO_TELEFONO"})
    assert read_encoding(tmp_path) == {
        "max_length": 128,
        "stride": 32,
        "outside_bias": 0.75,
        "subtokens": "all",
        "abbreviations": True,
        "identifiers": {"phone": "NUMERO_TELEFONO"},
    }


def test_an_identifier_map_that_is_not_kind_to_label_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ENCODING_FILE).write_text(json.dumps({"identifiers": ["phone"]}), encoding="utf-8")
    with pytest.raises(ValueError, match="identifiers must be an object"):
        read_encoding(tmp_path)
    (tmp_path / ENCODING_FILE).write_text(json.dumps({"identifiers": {"iban": "X"}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"encoding\.json: unknown identifier kinds \['iban'\]"):
        read_encoding(tmp_path)


def test_crf_transitions_are_read_back_exactly(tmp_path: Path) -> None:
    transitions = TagTransitions((0.5, -1.25, -3.0), ((0.1, 0.2, -7.5), (0.0, 1.0, 2.5), (-0.3, 0.4, 1.75)))
    write_encoding(tmp_path, 128, 32, 0.0, "first", transitions=transitions)
    assert read_encoding(tmp_path)["transitions"] == transitions


def test_transitions_that_are_not_a_square_of_numbers_are_a_clear_error(tmp_path: Path) -> None:
    bad = {"transitions": {"start": [0.0, 1.0], "scores": [[0.0, "x"], [0.0, 0.0]]}}
    (tmp_path / ENCODING_FILE).write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ValueError, match=r"encoding\.json: transitions must be"):
        read_encoding(tmp_path)
    (tmp_path / ENCODING_FILE).write_text(json.dumps({"transitions": {"start": [0.0], "scores": []}}))
    with pytest.raises(ValueError, match="must be 1 x 1"):
        read_encoding(tmp_path)


def test_a_folder_written_before_the_abbreviation_step_decodes_without_it(tmp_path: Path) -> None:
    (tmp_path / ENCODING_FILE).write_text(json.dumps({"max_length": 128, "outside_bias": 0.5}), encoding="utf-8")
    assert "abbreviations" not in read_encoding(tmp_path)  # SpanPredictor's default: off


def test_an_abbreviations_value_that_is_not_a_boolean_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ENCODING_FILE).write_text(json.dumps({"abbreviations": "yes"}), encoding="utf-8")
    with pytest.raises(ValueError, match="abbreviations must be true or false, not 'yes'"):
        read_encoding(tmp_path)


def test_a_folder_written_before_the_policy_had_a_name_reads_as_first(tmp_path: Path) -> None:
    legacy = {"max_length": 256, "stride": 64, "subtokens": "first labelled, rest -100"}
    (tmp_path / ENCODING_FILE).write_text(json.dumps(legacy), encoding="utf-8")
    assert read_encoding(tmp_path) == {"max_length": 256, "stride": 64, "subtokens": "first"}


def test_an_unknown_policy_is_a_clear_error_not_a_silent_default(tmp_path: Path) -> None:
    (tmp_path / ENCODING_FILE).write_text(json.dumps({"subtokens": "last"}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown sub-token policy 'last'"):
        read_encoding(tmp_path)
