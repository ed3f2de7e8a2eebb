"""The run report: one self-contained HTML file (inline CSS and SVG figures, no external assets).

Pure rendering: data in, HTML string out. Every text that comes from a note, a setting or a model is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from synthner_shared.contracts import EvaluationResult

COLOURS = {"strict": "#2f6f9f", "partial": "#9fc5e8"}
ENTITY_COLOURS = ("#ffd966", "#b6d7a8", "#f4cccc", "#c9daf8", "#d9d2e9", "#fce5cd")


@dataclass(frozen=True)
class SampleNote:
    title: str
    text: str
    entities: Sequence[tuple[int, int, str]]


@dataclass(frozen=True)
class ReportData:
    title: str
    final_line: str
    configuration: Mapping[str, object]
    """Setting -> value, shown as text."""
    counts: Sequence[tuple[str, int | float | str]]
    evaluations: Sequence[EvaluationResult]
    learning_curve: Sequence[Mapping[str, float]] = ()
    learning_curve_note: str = "No learning curve was recorded for this run."
    samples: Sequence[SampleNote] = ()
    artifacts: Sequence[tuple[str, str]] = ()
    notes: Sequence[str] = field(default_factory=list)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def highlight(text: str, entities: Sequence[tuple[int, int, str]], colours: Mapping[str, str]) -> str:
    """``text`` as HTML with each (start, end, label) span marked; spans are sorted and non-overlapping."""
    out: list[str] = []
    position = 0
    for start, end, label in sorted(entities):
        if start < position:
            continue
        out.append(_e(text[position:start]))
        colour = colours.get(label, ENTITY_COLOURS[0])
        out.append(
            f'<mark style="background:{colour}" title="{_e(label)}">{_e(text[start:end])}<sub>{_e(label)}</sub></mark>'
        )
        position = end
    out.append(_e(text[position:]))
    return "".join(out)


def f1_bars(evaluation: EvaluationResult, width: int = 560) -> str:
    """Horizontal bars: strict and partial F1 per label plus micro averages, on a 0..1 axis."""
    rows: list[tuple[str, float, float]] = [
        (label, scores.f1, evaluation.partial_per_label[label].f1 if label in evaluation.partial_per_label else 0.0)
        for label, scores in sorted(evaluation.strict_per_label.items())
    ]
    rows.append(("micro", evaluation.strict_micro.f1, evaluation.partial_micro.f1))
    left, bar_h, gap = 110, 14, 10
    plot_w = width - left - 60
    height = 30 + len(rows) * (2 * bar_h + gap) + 24
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * plot_w
        parts.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 20}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">{tick:g}</text>')
    y = 24
    for label, strict, partial in rows:
        parts.append(f'<text x="{left - 8}" y="{y + bar_h + 4}" font-size="12" text-anchor="end">{_e(label)}</text>')
        for kind, value in (("strict", strict), ("partial", partial)):
            w = max(0.0, min(1.0, value)) * plot_w
            parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{COLOURS[kind]}"/>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 3}" font-size="11">{kind} {value:.3f}</text>')
            y += bar_h
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def curve(points: Sequence[Mapping[str, float]], width: int = 560, height: int = 220, empty: str = "") -> str:
    """Training loss and dev strict F1 per epoch (two lines on a shared x axis, each scaled to its own range)."""
    if not points:
        return f"<p>{_e(empty)}</p>"
    left, right, top, bottom = 50, 50, 28, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    epochs = [p["epoch"] for p in points]
    x_min, x_max = min(epochs), max(epochs)
    span = (x_max - x_min) or 1.0
    max_loss = max(p["loss"] for p in points) or 1.0

    def xy(epoch: float, value: float, top_value: float) -> str:
        x = left + (epoch - x_min) / span * plot_w if len(points) > 1 else left + plot_w / 2
        y = top + plot_h - value / top_value * plot_h
        return f"{x:.1f},{y:.1f}"

    loss = " ".join(xy(p["epoch"], p["loss"], max_loss) for p in points)
    f1 = " ".join(xy(p["epoch"], p["dev_strict_f1"], 1.0) for p in points)
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>')
    parts.append(f'<polyline points="{loss}" fill="none" stroke="#cc4125" stroke-width="2"/>')
    parts.append(f'<polyline points="{f1}" fill="none" stroke="#2f6f9f" stroke-width="2"/>')
    for p in points:
        cx, cy = xy(p["epoch"], p["dev_strict_f1"], 1.0).split(",")
        parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="#2f6f9f"/>')
        x = cx
        parts.append(f'<text x="{x}" y="{height - 12}" font-size="11" text-anchor="middle">{p["epoch"]:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 1}" font-size="11" text-anchor="middle">epoch</text>')
    parts.append(f'<text x="4" y="12" font-size="11" fill="#cc4125">loss (max {max_loss:.3f})</text>')
    parts.append(f'<text x="{width - 4}" y="12" font-size="11" fill="#2f6f9f" text-anchor="end">dev F1 (0..1)</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h3{font-size:15px;margin:14px 0 6px}
h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.final{font-family:ui-monospace,Menlo,Consolas,monospace;background:#f4f4f4;padding:6px 10px;display:inline-block}
.note{white-space:pre-wrap;border:1px solid #ddd;padding:8px;font-size:13px;background:#fcfcfc;max-height:320px;
overflow:auto}mark{padding:0 2px;border-radius:3px}mark sub{font-size:9px;color:#555;margin-left:2px}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
.warn{background:#fff4e5;border-left:4px solid #e69138;padding:6px 10px}
"""


def _table(rows: Sequence[tuple[str, object]], header: tuple[str, str] | None = None) -> str:
    head = f"<tr><th>{_e(header[0])}</th><th>{_e(header[1])}</th></tr>" if header else ""
    body = "".join(f"<tr><td>{_e(k)}</td><td class='mono'>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{head}{body}</table>"


def _scores_table(evaluations: Sequence[EvaluationResult]) -> str:
    head = "<tr><th>set</th><th>docs</th><th>label</th><th>strict P</th><th>strict R</th><th>strict F1</th>"
    head += "<th>partial F1</th><th>support</th></tr>"
    rows = []
    for ev in evaluations:
        labels = [*sorted(ev.strict_per_label), "micro"]
        for label in labels:
            strict = ev.strict_micro if label == "micro" else ev.strict_per_label[label]
            partial = ev.partial_micro if label == "micro" else ev.partial_per_label.get(label)
            partial_f1 = f"{partial.f1:.3f}" if partial is not None else "-"
            rows.append(
                f"<tr><td>{_e(ev.dataset)}</td><td>{ev.documents}</td><td>{_e(label)}</td>"
                f"<td>{strict.precision:.3f}</td><td>{strict.recall:.3f}</td><td><b>{strict.f1:.3f}</b></td>"
                f"<td>{partial_f1}</td><td>{strict.support}</td></tr>"
            )
    return f"<table>{head}{''.join(rows)}</table>"


def render(data: ReportData) -> str:
    """The whole report as one HTML document."""
    labels = sorted({label for sample in data.samples for _, _, label in sample.entities})
    colours = {label: ENTITY_COLOURS[i % len(ENTITY_COLOURS)] for i, label in enumerate(labels)}
    sections = [
        f"<h1>{_e(data.title)}</h1>",
        f"<p class='final'>{_e(data.final_line)}</p>",
        *(f"<p class='warn'>{_e(note)}</p>" for note in data.notes),
        "<h2>Scores</h2>",
        "<p class='legend'>Entity-level F1 per label:"
        f"<span style='background:{COLOURS['strict']}'></span>strict (exact span and label)"
        f"<span style='background:{COLOURS['partial']}'></span>partial (overlap, same label)</p>",
    ]
    for evaluation in data.evaluations:
        sections.append(f"<h3>{_e(evaluation.dataset)} ({evaluation.documents} documents)</h3>")
        sections.append(f1_bars(evaluation))
    sections.append(_scores_table(data.evaluations))
    sections += ["<h2>Counts per stage</h2>", _table(list(data.counts), ("stage", "count"))]
    sections += ["<h2>Learning curve</h2>", curve(data.learning_curve, empty=data.learning_curve_note)]
    sections.append("<h2>Sample synthetic notes (the most entities; annotator's entities highlighted)</h2>")
    if not data.samples:
        sections.append("<p>No annotated notes.</p>")
    for sample in data.samples:
        sections.append(f"<h3>{_e(sample.title)}</h3>")
        sections.append(f"<div class='note'>{highlight(sample.text, sample.entities, colours)}</div>")
    sections += ["<h2>Run configuration</h2>", _table([(k, v) for k, v in data.configuration.items()])]
    if data.artifacts:
        sections += ["<h2>Artifacts</h2>", _table(list(data.artifacts), ("artifact", "path"))]
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(data.title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
