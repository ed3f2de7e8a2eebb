"""The HTML evaluation report escapes document text and shows per-label bars and disagreements."""

from __future__ import annotations

from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.evaluation import evaluate_spans
from synthner_trainer.report import render_report


def test_report_escapes_text_and_marks_gold_and_predicted_spans() -> None:
    text = "<script>alert(1)</script> has asthma & flu"
    asthma, flu = DocumentEntity(start=30, end=36, label="Disease"), DocumentEntity(start=39, end=42, label="Disease")
    gold = [Document(id="d<1>", text=text, entities=[asthma, flu])]
    predicted = [Document(id="d<1>", text=text, entities=[asthma])]
    page = render_report(evaluate_spans(gold, predicted, "gold"), gold, predicted, "model-x")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "d&lt;1&gt; (1 differences)" in page
    assert '<mark class="both"' in page
    assert '<mark class="gold"' in page
    assert 'class="bar' in page
