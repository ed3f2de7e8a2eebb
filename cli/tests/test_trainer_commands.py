"""``synthner train``, ``evaluate`` and ``dataset``: registration, clear errors on bad input, the store views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthner.main import build_parser, main
from synthner_shared.testing import sample_annotated
from synthner_trainer.store import DatasetStore


def write_docs(path: Path, label: str = "Disease") -> Path:
    entity = {"start": 11, "end": 17, "label": label}
    lines = [{"id": "a", "text": "history of asthma", "entities": [entity]}, {"id": "b", "text": "no fever"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_trainer_commands_are_registered() -> None:
    help_text = build_parser().format_help()
    for command in ("train", "evaluate", "dataset"):
        assert command in help_text


def test_train_with_a_missing_base_model_exits_2_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_docs(tmp_path / "d.jsonl")
    code = main(["train", "--data", str(data), "--base-model", str(tmp_path / "none"), "--out", str(tmp_path / "m")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_train_with_labels_outside_the_set_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_docs(tmp_path / "d.jsonl", label="Drug")
    assert main(["train", "--data", str(data), "--labels", "Disease", "--out", str(tmp_path / "m")]) == 2
    assert "Drug" in capsys.readouterr().err


def test_train_with_an_empty_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["train", "--data", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "m")]) == 2
    assert "empty" in capsys.readouterr().err


def test_evaluate_a_folder_that_is_not_a_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold = write_docs(tmp_path / "gold.jsonl")
    assert main(["evaluate", "--model", str(tmp_path), "--gold", str(gold)]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_dataset_list_snapshot_show_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_path = tmp_path / "store.sqlite3"
    store = DatasetStore(store_path)
    store.add(sample_annotated(seed=1, target_chars=200, spans=2))
    store.close()
    assert main(["dataset", "--store", str(store_path), "snapshot"]) == 0
    version = capsys.readouterr().out.split(":")[0]
    assert main(["dataset", "--store", str(store_path), "list"]) == 0
    assert f"{version}: 1 documents (Disease 2)" in capsys.readouterr().out
    assert main(["dataset", "--store", str(store_path), "show", version, "--ids"]) == 0
    assert '"document_count": 1' in capsys.readouterr().out
    assert main(["dataset", "--store", str(store_path), "export", version, str(tmp_path / "out.jsonl")]) == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_train_then_evaluate_a_small_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The happy paths: a few NCBI-disease documents, one short epoch (seconds on a CPU), scored with a report."""
    ncbi = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ncbi_disease"
    if not (ncbi / "train.jsonl").is_file():
        pytest.skip("NCBI-disease gold data not found beside the repository")
    lines = (ncbi / "train.jsonl").read_text(encoding="utf-8").splitlines()
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")
    dev.write_text("\n".join(lines[8:11]) + "\n", encoding="utf-8")
    model = tmp_path / "model"
    arguments = ["--data", str(train), "--dev", str(dev), "--gold", str(dev), "--out", str(model)]
    options = ["--epochs", "1", "--batch-size", "8", "--max-length", "64", "--stride", "16", "--device", "cpu"]
    assert main(["train", *arguments, *options]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"model written to {model}"
    assert {json.loads(line)["dataset"] for line in out[:-1]} >= {"dev"}
    assert (model / "metrics.json").is_file()
    report = tmp_path / "report.html"
    assert (
        main(["evaluate", "--model", str(model), "--gold", str(dev), "--report", str(report), "--device", "cpu"]) == 0
    )
    printed = capsys.readouterr().out
    assert "strict micro" in printed
    assert f"report written to {report}" in printed
    assert report.read_text(encoding="utf-8").lower().startswith("<!doctype html>")
    assert main(["evaluate", "--model", str(model), "--gold", str(dev), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["documents"] == 3


def test_adapt_is_registered_and_refuses_bad_input_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "adapt" in build_parser().format_help()
    notes = write_docs(tmp_path / "notes.jsonl")
    out = tmp_path / "adapted"
    code = main(["adapt", "--notes", str(notes), "--base-model", str(tmp_path / "none"), "--out", str(out)])
    assert code == 2
    assert "only 2 non-empty notes" in capsys.readouterr().err
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"id": str(i), "text": f"note number {i}"}) + "\n" for i in range(8)))
    assert main(["adapt", "--notes", str(many), "--base-model", str(encoder), "--out", str(out)]) == 2
    assert "not a causal language model" in capsys.readouterr().err
    assert not out.exists()
