"""The report's figures as PNG files beside report.html: one F1 bar chart per scored set, the learning curve."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from synthner.figures import FiguresUnavailable, write_figures
from synthner.report import ReportData
from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.evaluation import evaluate_spans

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report(curve: bool) -> ReportData:
    gold = [Document(id="d", text="asthma and gout", entities=[DocumentEntity(start=0, end=6, label="Disease")])]
    predicted = [Document(id="d", text="asthma and gout", entities=[DocumentEntity(start=0, end=3, label="Disease")])]
    return ReportData(
        title="t",
        final_line="f1=0.0000 seconds=1",
        configuration={},
        counts=[],
        evaluations=[evaluate_spans(gold, gold, "dev"), evaluate_spans(gold, predicted, "gold:test.jsonl")],
        learning_curve=[
            {"epoch": 1.0, "loss": 0.9, "dev_strict_f1": 0.1},
            {"epoch": 2.0, "loss": 0.4, "dev_strict_f1": 0.3},
        ]
        if curve
        else [],
    )


def test_figures_are_valid_png_images(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    image_module = pytest.importorskip("PIL.Image")  # matplotlib's own dependency

    written = write_figures(report(curve=True), tmp_path)
    assert [p.name for p in written] == [
        "figure-f1-1-dev.png",
        "figure-f1-2-gold-test-jsonl.png",
        "figure-learning-curve.png",
    ]
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        with image_module.open(path) as image:
            image.verify()
        with image_module.open(path) as image:
            assert image.format == "PNG"
            assert image.width > 300
            assert image.height > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in written]  # no partial files left


def test_no_learning_curve_figure_without_a_curve(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert [p.name for p in write_figures(report(curve=False), tmp_path)] == [
        "figure-f1-1-dev.png",
        "figure-f1-2-gold-test-jsonl.png",
    ]


def test_without_matplotlib_the_reason_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(FiguresUnavailable, match=r"synthner\[figures\]"):
        write_figures(report(curve=True), tmp_path)
    assert list(tmp_path.iterdir()) == []
