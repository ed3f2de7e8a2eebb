"""``synthner annotate run|score`` with the lexicon backend and prediction files (the LLM path is covered by the
annotator's own integration tests)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from synthner.main import main

GOLD = [
    {
        "id": "1",
        "text": "Asthma and gout.",
        "entities": [{"start": 0, "end": 6, "label": "Disease"}, {"start": 11, "end": 15, "label": "Disease"}],
    },
    {"id": "2", "text": "No asthma today.", "entities": [{"start": 3, "end": 9, "label": "Disease"}]},
]


def write(path: Path, documents: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents), encoding="utf-8")
    return path


def test_score_lexicon_prints_strict_and_partial_per_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold = write(tmp_path / "gold.jsonl", GOLD)
    terms = tmp_path / "terms.txt"
    terms.write_text("asthma\n", encoding="utf-8")
    assert main(["annotate", "score", "--gold", str(gold), "--terms", f"Disease={terms}"]) == 0
    out = capsys.readouterr().out
    disease = next(line for line in out.splitlines() if line.strip().startswith("Disease"))
    assert disease.split()[1:] == ["1.000", "0.667", "0.800", "1.000", "0.667", "0.800", "3"]


def test_score_prediction_files_reports_agreement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold = write(tmp_path / "gold.jsonl", GOLD)
    half = [dict(GOLD[0], entities=GOLD[0]["entities"][:1]), GOLD[1]]
    other = write(tmp_path / "other.jsonl", half)
    assert (
        main(
            [
                "annotate",
                "score",
                "--gold",
                str(gold),
                "--no-annotator",
                "--predictions",
                str(gold),
                "--predictions",
                str(other),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "gold ~ other: 0.800" in out


def test_run_writes_annotated_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / "in.jsonl", [dict(d, entities=[]) for d in GOLD])
    lexicon = write(tmp_path / "gold.jsonl", GOLD)
    out = tmp_path / "out.jsonl"
    assert main(["annotate", "run", str(source), str(out), "--labels", "Disease", "--lexicon-from", str(lexicon)]) == 0
    documents = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [[(e["start"], e["end"], e["label"]) for e in d["entities"]] for d in documents] == [
        [(0, 6, "Disease"), (11, 15, "Disease")],
        [(3, 9, "Disease")],
    ]
    assert "2 documents, 3 spans; 0 documents failed" in capsys.readouterr().out


def external_run(source: Path, out: Path, *extra: str) -> list[str]:
    """``synthner annotate run`` with an external LLM endpoint (nothing listens there)."""
    return [
        "annotate",
        "run",
        str(source),
        str(out),
        "--labels",
        "Disease",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "gpt-test",
        *extra,
    ]


SYNTHETIC = ("--provenance", "synthetic")


def test_run_refuses_real_documents_for_an_external_llm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / "in.jsonl", GOLD)
    out = tmp_path / "out.jsonl"
    code = main(external_run(source, out))
    assert code == 1
    captured = capsys.readouterr()
    assert "EgressRefused" in captured.err
    assert "only synthetic notes" in captured.err
    assert "0 documents, 0 spans; 2 documents failed" in captured.out


def test_declaring_documents_synthetic_does_not_mark_them_passed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a leak reference the gate cannot pass a document; with one, it fails a document with an e-mail
    address. Either way nothing is sent (nothing listens on port 9: a call would fail differently)."""
    from synthner_shared.ngrams import NgramReference  # noqa: PLC0415 - the CLI imports it lazily too

    source = write(tmp_path / "in.jsonl", GOLD)
    assert main(external_run(source, tmp_path / "out.jsonl", *SYNTHETIC)) == 1
    captured = capsys.readouterr()
    assert "leak check 'unchecked'" in captured.err
    assert "0 documents, 0 spans; 2 documents failed" in captured.out

    reference = tmp_path / "reference.npz"
    NgramReference.build(["Referral for physiotherapy after knee surgery, walking with crutches."]).save(reference)
    leaky = write(tmp_path / "leaky.jsonl", [{"id": "1", "text": "Asthma; write to a.b@example.org.", "entities": []}])
    assert main(external_run(leaky, tmp_path / "out.jsonl", *SYNTHETIC, "--leak-reference", str(reference))) == 1
    captured = capsys.readouterr()
    assert "leak check 'failed'" in captured.err
    assert "a.b@example.org" not in captured.err


def test_score_an_ensemble_scores_each_member_and_their_agreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = write(tmp_path / "gold.jsonl", GOLD)
    members = [
        {"weight": 1, "annotator": {"kind": "lexicon", "name": "asthma-only", "terms": {"Disease": ["asthma"]}}},
        {"weight": 1, "annotator": {"kind": "lexicon", "name": "both", "terms": {"Disease": ["asthma", "gout"]}}},
    ]
    config = tmp_path / "ensemble.json"
    config.write_text(json.dumps({"annotator": {"kind": "ensemble", "members": members, "threshold": 0.4}}))
    assert main(["annotate", "score", "--gold", str(gold), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ensemble: 2 documents" in out
    assert "asthma-only: 2 documents" in out
    assert "both: 2 documents" in out
    assert "asthma-only ~ both: 0.800" in out
