"""The agreement figures as a self-contained HTML report (no external assets; names are escaped, no note text)."""

from __future__ import annotations

import html

from synthner_trainer.review.agreement import Agreement, Kappa

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{padding:.2em .6em;text-align:left;border-bottom:1px solid #ddd}"
    ".bar{display:inline-block;height:.8em;background:#4a7bd0;vertical-align:middle;margin-right:.4em}"
)


def _bar(value: float) -> str:
    return f'<span class="bar" style="width:{max(value, 0.0) * 12:.2f}em"></span>{value:.3f}'


def _kappa_table(title: str, rows: list[Kappa]) -> str:
    if not rows:
        return f"<h2>{html.escape(title)}</h2><p>No two of them share a document.</p>"
    body = "".join(
        f"<tr><td>{html.escape(r.first)}</td><td>{html.escape(r.second)}</td><td>{_bar(r.kappa)}</td>"
        f"<td>{r.documents}</td><td>{r.tokens}</td></tr>"
        for r in rows
    )
    head = "<tr><th>first</th><th>second</th><th>Cohen's kappa</th><th>documents</th><th>tokens</th></tr>"
    return f"<h2>{html.escape(title)}</h2><table>{head}{body}</table>"


def agreement_html(result: Agreement, title: str = "Annotation review: agreement") -> str:
    """The whole report: per annotator and label P/R/F1 against the reviewed spans, then the kappa tables."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>{result.reviewed_documents} reviewed documents (each note's latest review is its gold version).</p>",
    ]
    for name, scores in result.annotators.items():
        rows = [*sorted(scores.strict_per_label.items()), ("micro", scores.strict_micro)]
        body = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{s.precision:.3f}</td><td>{s.recall:.3f}</td><td>{_bar(s.f1)}</td>"
            f"<td>{s.support}</td></tr>"
            for label, s in rows
        )
        parts.append(
            f"<h2>{html.escape(name)} against the reviewed spans ({scores.documents} documents)</h2><table>"
            "<tr><th>label</th><th>precision</th><th>recall</th><th>F1 (strict)</th><th>support</th></tr>"
            f"{body}</table>"
        )
    parts.append(_kappa_table("Token-level Cohen's kappa between annotators", result.between_annotators))
    parts.append(
        _kappa_table("Token-level Cohen's kappa between reviewers (notes reviewed twice)", result.between_reviewers)
    )
    parts.append("</body></html>")
    return "\n".join(parts)
