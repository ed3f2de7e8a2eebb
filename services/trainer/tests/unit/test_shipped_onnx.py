"""The ONNX the trainer ships in a model folder for the NER API: written with its checksums, and checked against the
torch weights before a version may be published (on the session's real tiny model, ``tiny_ner_model``)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from transformers import AutoModelForTokenClassification

from synthner_shared.documents import read_documents
from synthner_shared.ner.onnx import (
    INT8_FP32_FFN_LAYERS,
    INT8_MAX_F1_DROP,
    ONNX_FILE,
    ONNX_INT8_FILE,
    ONNX_MANIFEST,
    export_onnx,
    feed_forward_matmuls,
    file_digest,
    quantize_int8,
    write_int8,
)
from synthner_shared.ner.windowed import ModelFolderError
from synthner_trainer.pipeline import loads_and_predicts

NCBI = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "ncbi_disease"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the session's first user of tiny_ner_model trains it


def test_a_trained_folder_ships_both_graphs_with_their_sizes_and_digests(tiny_ner_model: Path) -> None:
    manifest = json.loads((tiny_ner_model / ONNX_MANIFEST).read_text())
    assert set(manifest["files"]) == {ONNX_FILE, ONNX_INT8_FILE}
    for name, recorded in manifest["files"].items():
        path = tiny_ner_model / name
        assert recorded == {"bytes": path.stat().st_size, "sha256": file_digest(path)}
    assert (tiny_ner_model / ONNX_INT8_FILE).stat().st_size < (tiny_ner_model / ONNX_FILE).stat().st_size / 2
    loads_and_predicts(tiny_ner_model)


def test_the_publish_check_fails_a_truncated_graph(tiny_ner_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_ner_model, copy)
    graph = copy / ONNX_FILE
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(ModelFolderError, match="truncated"):
        loads_and_predicts(copy)


def test_the_publish_check_fails_a_graph_of_other_weights(tiny_ner_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_ner_model, copy)
    other = AutoModelForTokenClassification.from_pretrained(copy)
    with torch.no_grad():
        other.classifier.bias.add_(torch.tensor([0.0, 0.5, -0.5]))  # a graph that no longer matches the weights
    export_onnx(other, copy, int8=False)  # its manifest is consistent: only the comparison can catch it
    with pytest.raises(ValueError, match=r"other spans|differs from the torch weights"):
        loads_and_predicts(copy)


def test_quantising_keeps_onnxruntime_s_advice_off_the_root_logger(
    tiny_ner_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime logs "Please consider to run pre-processing" on the root logger at WARNING on every call (it reached
    the demo's terminal) and a line per tensor at INFO (it filled the trainer's log). Our module logs them at DEBUG
    instead, and the root logger keeps no filter of ours."""
    filters = list(logging.getLogger().filters)
    with caplog.at_level(logging.DEBUG):
        quantize_int8(tiny_ner_model / ONNX_FILE, tmp_path / ONNX_INT8_FILE)
    assert (tmp_path / ONNX_INT8_FILE).stat().st_size > 0
    assert not [r for r in caplog.records if r.name == "root"]
    assert any(
        r.name == "synthner_shared.ner.onnx" and "Quantization parameters" in r.getMessage() for r in caplog.records
    )
    assert any(r.name == "synthner_shared.ner.onnx" and "pre-processing" in r.getMessage() for r in caplog.records)
    assert logging.getLogger().filters == filters


def _plain_matmuls(path: Path) -> set[str]:
    return {node.name for node in onnx.load(str(path)).graph.node if node.op_type == "MatMul"}


def test_the_int8_graph_keeps_the_first_layers_feed_forward_blocks_fp32(tiny_ner_model: Path, tmp_path: Path) -> None:
    """int8 loses its accuracy mostly in the first layers' feed-forward blocks: the safe graph keeps their up and down
    projections plain fp32 MatMuls and makes every other projection int8."""
    pairs = feed_forward_matmuls(onnx.load(str(tiny_ner_model / ONNX_FILE)))
    assert [(up.split("/")[-3:-1], down.split("/")[-3:-1]) for up, down in pairs] == [
        (["intermediate", "dense"], ["output", "dense"])
    ] * 6  # all-MiniLM-L6-v2: one pair per layer, found by the weights' shapes alone
    assert [up.split("/")[3] for up, _ in pairs] == [f"layer.{i}" for i in range(6)]
    kept = [name for pair in pairs[:INT8_FP32_FFN_LAYERS] for name in pair]
    later = {name for pair in pairs[INT8_FP32_FFN_LAYERS:] for name in pair}
    assert quantize_int8(tiny_ner_model / ONNX_FILE, tmp_path / ONNX_INT8_FILE) == kept
    plain = _plain_matmuls(tmp_path / ONNX_INT8_FILE)
    assert set(kept) <= plain
    assert not later & plain

    assert quantize_int8(tiny_ner_model / ONNX_FILE, tmp_path / ONNX_INT8_FILE, fp32_ffn_layers=0) == []
    assert not {name for pair in pairs for name in pair} & _plain_matmuls(tmp_path / ONNX_INT8_FILE)


def test_every_matmul_ships_int8_where_the_gold_allows_it(tiny_ner_model: Path, tmp_path: Path) -> None:
    """Given documents, the int8 graph is every MatMul int8 when its strict F1 there is within the tolerance of the fp32
    graph's, and keeps the first layers' feed-forward blocks fp32 when it is not; ``onnx.json`` says which and why."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_ner_model, copy)
    dev = list(read_documents(NCBI / "dev.jsonl"))[:10]
    pairs = feed_forward_matmuls(onnx.load(str(copy / ONNX_FILE)))
    kept = [name for pair in pairs[:INT8_FP32_FFN_LAYERS] for name in pair]

    passed = write_int8(copy, dev, max_f1_drop=1.0)
    assert passed["fp32_nodes"] == []
    assert not {name for pair in pairs for name in pair} & _plain_matmuls(copy / ONNX_INT8_FILE)
    chosen = passed["chosen_on"]
    assert chosen["all_int8"] is True
    assert chosen["documents"] == 10
    assert 0 <= chosen["all_int8_strict_f1"] <= 1

    failed = write_int8(copy, dev, max_f1_drop=-1.0)  # a negative tolerance no graph can meet
    assert failed["fp32_nodes"] == kept
    assert set(kept) <= _plain_matmuls(copy / ONNX_INT8_FILE)
    assert failed["chosen_on"]["all_int8"] is False
    assert failed["chosen_on"]["fp32_strict_f1"] == chosen["fp32_strict_f1"]

    unlabelled = [d.model_copy(update={"entities": []}) for d in dev]  # F1 0 for every graph: no evidence either way
    assert write_int8(copy, unlabelled, max_f1_drop=1.0) == {"method": passed["method"], "fp32_nodes": kept}


def test_a_trained_folder_s_int8_graph_was_chosen_on_its_dev_documents(tiny_ner_model: Path) -> None:
    chosen = json.loads((tiny_ner_model / ONNX_MANIFEST).read_text())["int8"]["chosen_on"]
    assert chosen["documents"] == 10  # the fixture's dev split
    assert chosen["max_f1_drop"] == INT8_MAX_F1_DROP


def test_the_export_records_its_int8_choice_and_ships_a_loadable_folder(tiny_ner_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_ner_model, copy)
    model = AutoModelForTokenClassification.from_pretrained(copy)
    manifest = export_onnx(model, copy, choose_int8_on=list(read_documents(NCBI / "dev.jsonl"))[:5])
    assert manifest == json.loads((copy / ONNX_MANIFEST).read_text())
    assert manifest["int8"]["chosen_on"]["documents"] == 5
    recorded = manifest["files"][ONNX_INT8_FILE]
    assert recorded == {"bytes": (copy / ONNX_INT8_FILE).stat().st_size, "sha256": file_digest(copy / ONNX_INT8_FILE)}
    loads_and_predicts(copy)
