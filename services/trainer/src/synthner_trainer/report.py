"""A self-contained HTML evaluation report: per-label bars and a few documents with gold vs predicted spans.

Every piece of document text goes through :func:`html.escape`; the report holds gold text, so it stays where the
gold set may be.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from synthner_shared.contracts import EvaluationResult
from synthner_shared.contracts.spans import SpanLike
from synthner_shared.evaluation import DocumentLike

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse}td,th{padding:.2em .6em;text-align:left}
.bar{display:inline-block;height:.9em;background:#4a7bd0;vertical-align:middle}
.bar.partial{background:#9bb7e8}
.doc{border:1px solid #ccc;padding:.6em;margin:.6em 0;white-space:pre-wrap;line-height:1.8}
mark.gold{background:#bfe6bf}mark.pred{background:#f5d49a}mark.both{background:#9fd6e8}
"""


def _bar(value: float, css: str = "") -> str:
    return f'<span class="bar {css}" style="width:{value * 20:.2f}em"></span> {value:.3f}'


def _marked(text: str, gold: Sequence[SpanLike], predicted: Sequence[SpanLike]) -> str:
    """The text with gold, predicted and matching (same span and label) mentions highlighted."""
    marks: dict[tuple[int, int], set[str]] = {}
    labels: dict[tuple[int, int], str] = {}
    for kind, spans in (("gold", gold), ("pred", predicted)):
        for span in spans:
            marks.setdefault((span.start, span.end), set()).add(f"{kind}:{span.label}")
            labels[(span.start, span.end)] = span.label
    pieces, position = [], 0
    for (start, end), kinds in sorted(marks.items()):
        if start < position:  # a gold and a predicted span overlap differently: show the first only
            continue
        gold_labels = {k[5:] for k in kinds if k.startswith("gold:")}
        pred_labels = {k[5:] for k in kinds if k.startswith("pred:")}
        css = "both" if gold_labels & pred_labels else "gold" if gold_labels else "pred"
        title = "gold " + ",".join(sorted(gold_labels)) + " / predicted " + ",".join(sorted(pred_labels))
        pieces.append(html.escape(text[position:start]))
        pieces.append(
            f'<mark class="{css}" title="{html.escape(title)}">{html.escape(text[start:end])}'
            f"<sub>{html.escape(labels[(start, end)])}</sub></mark>"
        )
        position = end
    pieces.append(html.escape(text[position:]))
    return "".join(pieces)


def render_report(
    result: EvaluationResult,
    gold: Sequence[DocumentLike],
    predicted: Sequence[DocumentLike],
    model_name: str,
    examples: int = 5,
) -> str:
    """The report as one HTML page. ``examples`` documents with the most disagreements are shown."""
    rows = []
    for label in sorted(set(result.strict_per_label) | set(result.partial_per_label)):
        strict = result.strict_per_label.get(label)
        partial = result.partial_per_label.get(label)
        rows.append(
            f"<tr><td>{html.escape(label)}</td><td>{strict.support if strict else 0}</td>"
            f"<td>{_bar(strict.f1 if strict else 0.0)}</td>"
            f"<td>{_bar(partial.f1 if partial else 0.0, 'partial')}</td></tr>"
        )
    by_id = {d.id: d for d in predicted}

    def disagreements(document: DocumentLike) -> int:
        gold_set = {(s.start, s.end, s.label) for s in document.entities}
        pred_set = {(s.start, s.end, s.label) for s in by_id[document.id].entities}
        return len(gold_set ^ pred_set)

    shown = sorted(gold, key=lambda d: (-disagreements(d), d.id))[:examples]
    docs = [
        f"<h3>{html.escape(d.id)} ({disagreements(d)} differences)</h3>"
        f'<div class="doc">{_marked(d.text, d.entities, by_id[d.id].entities)}</div>'
        for d in shown
    ]
    s, m, p = result.strict_micro, result.strict_macro, result.partial_micro
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>synthner evaluation: {html.escape(model_name)}</title>
<style>{_STYLE}</style></head><body>
<h1>Evaluation of {html.escape(model_name)} on {html.escape(result.dataset)}</h1>
<p>{result.documents} documents. Strict = seqeval IOB2 strict over character spans; partial = overlap matching.</p>
<table><tr><th></th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
<tr><td>strict micro</td><td>{s.precision:.4f}</td><td>{s.recall:.4f}</td><td>{s.f1:.4f}</td><td>{s.support}</td></tr>
<tr><td>strict macro</td><td>{m.precision:.4f}</td><td>{m.recall:.4f}</td><td>{m.f1:.4f}</td><td>{m.support}</td></tr>
<tr><td>partial micro</td><td>{p.precision:.4f}</td><td>{p.recall:.4f}</td><td>{p.f1:.4f}</td><td>{p.support}</td></tr>
</table>
<h2>Per label</h2>
<table><tr><th>label</th><th>support</th><th>strict F1</th><th>partial F1</th></tr>{"".join(rows)}</table>
<h2>Documents with the most differences</h2>
<p><mark class="both">gold = predicted</mark> <mark class="gold">gold only</mark>
<mark class="pred">predicted only</mark></p>
{"".join(docs)}
</body></html>
"""
