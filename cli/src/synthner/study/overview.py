"""Running several routes, and the workdir's table, report and figures over every finished route."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from synthner.study.options import ROUTES, Route, StudyOptions, StudyResult
from synthner.study.stages import Study, format_figure, write_json_atomically
from synthner_shared.files import write_text_atomic

if TYPE_CHECKING:
    from synthner.report import ReportData
    from synthner_shared.contracts import EvaluationResult


def describe(result: StudyResult) -> list[str]:
    """A short human summary: the figures and each stage's time."""
    lines = [f"route {result.route}: gold-trained teacher strict F1 {result.f1_gold:.4f}"]
    if result.f1_synthetic is not None:
        lines.append(
            f"  synthetic-only student strict F1 {result.f1_synthetic:.4f} (partial {result.partial_f1_synthetic:.4f})"
            f" on {result.notes} synthetic notes: gap {result.gap:.4f}"
        )
    for label, row in result.per_label.items():
        lines.append(f"  {label}: " + " ".join(f"{k}={v:.4f}" for k, v in row.items()))
    if result.privacy:
        lines.append("  privacy: " + " ".join(f"{k}={format_figure(v)}" for k, v in result.privacy.items()))
    lines.append("  stages: " + ", ".join(f"{r.name} {r.seconds:.0f} s" for r in result.stages))
    return lines


# --- several routes, one table ----------------------------------------------------------------------------------------


def run_routes(options: StudyOptions, routes: Sequence[Route], say: Callable[[str], None] = print) -> list[StudyResult]:
    """Run each route over the same workdir (the teacher is trained once and shared), then write the overview."""
    results = [Study(replace(options, route=route), say).run() for route in routes]
    write_overview(options.workdir, say)
    return results


@dataclass(frozen=True)
class RouteRow:
    """One finished route's figures in the overview, read back from its ``summary.json``."""

    route: str
    f1_gold: float
    f1_synthetic: float | None
    partial_f1_synthetic: float | None
    gap: float | None
    notes: int
    privacy: dict[str, float]
    seconds: dict[str, float]
    """Each stage's wall time."""
    per_label: dict[str, dict[str, float]]
    curve: list[dict[str, float]]
    """The learning curve over synthetic notes (``notes``, ``test_strict_f1``, ...), where one was recorded."""
    student: str = "student"
    """The student's folder in the route's directory (``student-distill-w0.5-t2``: the levers it was trained with)."""

    def flat(self) -> dict[str, object]:
        """The row as the overview's ``summary.json`` holds it: privacy figures and stage times as top-level keys."""
        return {
            "route": self.route,
            "f1_gold": self.f1_gold,
            "f1_synthetic": self.f1_synthetic,
            "partial_f1_synthetic": self.partial_f1_synthetic,
            "gap": self.gap,
            "notes": self.notes,
            **{f"privacy_{key}": value for key, value in self.privacy.items()},
            **{f"seconds_{name}": value for name, value in self.seconds.items()},
            "per_label": self.per_label,
            "curve": self.curve,
            "student": self.student,
        }


def overview_rows(workdir: Path) -> list[RouteRow]:
    """One row per route that has finished in ``workdir`` (its ``summary.json``), in the order of :data:`ROUTES`."""
    rows = []
    for route in ROUTES:
        path = workdir / route / "summary.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        rows.append(
            RouteRow(
                route=route,
                f1_gold=summary["f1_gold"],
                f1_synthetic=summary["f1_synthetic"],
                partial_f1_synthetic=summary["partial_f1_synthetic"],
                gap=summary["gap"],
                notes=summary["notes"],
                privacy=summary["privacy"],
                seconds={stage["name"]: stage["seconds"] for stage in summary["stages"]},
                per_label=summary["per_label"],
                curve=next((s["counts"]["points"] for s in summary["stages"] if s["name"] == "curve"), []),
                student=summary.get("student", "student"),  # summaries written before it was recorded: plain
            )
        )
    return rows


def write_overview(workdir: Path, say: Callable[[str], None] = print) -> None:
    """``summary.json`` (every finished route, one row each) and ``report.html`` with its PNG figures."""
    rows = overview_rows(workdir)
    write_json_atomically(workdir / "summary.json", {"routes": [row.flat() for row in rows]})
    from synthner.figures import FiguresUnavailable
    from synthner.report import render

    data = report_data(workdir, rows)
    report = workdir / "report.html"
    write_text_atomic(report, render(data))
    try:
        figures = write_study_figures(workdir, data, rows)
    except FiguresUnavailable as exc:
        say(f"no PNG figures: {exc}")
        figures = []
    say(f"report: {report} ({len(figures)} figures beside it), summary: {workdir / 'summary.json'}")


def report_data(workdir: Path, rows: Sequence[RouteRow]) -> ReportData:
    from synthner.report import ReportData, SampleNote
    from synthner_shared.contracts import EvaluationResult
    from synthner_shared.documents import read_documents

    def scores(path: Path, name: str) -> EvaluationResult:
        result = EvaluationResult.model_validate_json(path.read_text(encoding="utf-8"))
        return result.model_copy(update={"dataset": f"{name}, {result.dataset}"})

    evaluations = [scores(workdir / "teacher-test.json", "gold-trained teacher")] if rows else []
    counts: list[tuple[str, int | float | str]] = []
    samples: list[SampleNote] = []
    for row in rows:
        route = row.route
        if route != "gold":
            student = workdir / route / f"{row.student}-test.json"
            evaluations.append(scores(student, f"{route}: synthetic-only student ({row.student})"))
            figures = row.flat().items()
            counts += [(f"{route}: {key}", value) for key, value in figures if isinstance(value, int | float)]
            counts += [
                (f"{route}: student on {p['notes']} notes, test strict F1", p["test_strict_f1"]) for p in row.curve
            ]
            synthetic = sorted(read_documents(workdir / route / "synthetic.jsonl"), key=lambda d: -len(d.entities))
            samples += [
                SampleNote(
                    f"{route}: note {d.id[:12]} ({len(d.text)} characters, {len(d.entities)} entities)",
                    d.text,
                    [(e.start, e.end, e.label) for e in d.entities],
                )
                for d in synthetic[:2]
            ]
    line = " | ".join(
        f"{r.route}: f1_gold={r.f1_gold:.4f}"
        + ("" if r.f1_synthetic is None else f" f1_synthetic={r.f1_synthetic:.4f} gap={r.gap or 0.0:.4f}")
        for r in rows
    )
    return ReportData(
        title="synthner study: synthetic-only models against the gold-trained teacher",
        final_line=line or "no route has finished",
        configuration={"workdir": workdir.name, "routes": ", ".join(r.route for r in rows)},
        counts=counts,
        evaluations=evaluations,
        learning_curve_note="The learning curve over the number of synthetic notes is in the counts above.",
        samples=samples,
        notes=[
            "gold: the teacher, trained on the real gold train split (the reference). Each other route's student is "
            "trained only on that route's synthetic notes, labelled by the teacher; every model is scored on the "
            "real test split, which no choice was made on."
        ],
    )


def write_study_figures(workdir: Path, data: ReportData, rows: Sequence[RouteRow]) -> list[Path]:
    """The report's F1 figures, and the learning curve over synthetic notes where one was recorded."""
    from synthner.figures import PREFIX, notes_curve_figure, write_figures

    for old in workdir.glob(f"{PREFIX}*.png"):
        old.unlink()
    written = write_figures(data, workdir)
    curves = {row.route: row.curve for row in rows if row.curve}
    if curves:
        final = workdir / f"{PREFIX}notes-curve.png"
        notes_curve_figure(curves, rows[0].f1_gold, final.with_name(f".{final.name}.partial"))
        final.with_name(f".{final.name}.partial").replace(final)
        written.append(final)
    return written
