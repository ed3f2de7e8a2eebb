"""The report's figures as PNG files (per-label strict/partial F1 bars per scored set, the learning curve).

matplotlib (headless Agg backend) is an optional dependency, the ``figures`` extra, installed by ``make install``;
without it :func:`write_figures` raises :class:`FiguresUnavailable` with a one-line reason and the HTML report, whose
figures are inline SVG, is still complete. Figures carry labels and numbers only, never note text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from synthner.report import COLOURS, ReportData
from synthner_shared.contracts import EvaluationResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PREFIX = "figure-"
"""Every figure file is ``figure-*.png``, so a new run can remove an earlier run's figures and nothing else."""


class FiguresUnavailable(RuntimeError):
    """matplotlib is not installed."""


def figure_class() -> type[Figure]:
    """matplotlib's ``Figure``, or :class:`FiguresUnavailable` without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional dependency

        matplotlib.use("Agg")  # no display: files only
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError:
        raise FiguresUnavailable(
            'PNG figures need matplotlib: pip install "synthner[figures]" (make install has it)'
        ) from None
    return Figure


def new_figure(width: float, height: float) -> Figure:
    """A figure of its own, not pyplot's (no global state to close, no display): ``savefig`` draws it with Agg."""
    return figure_class()(figsize=(width, height), dpi=100)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "set"


def f1_figure(evaluation: EvaluationResult, path: Path) -> Path:
    labels = sorted(evaluation.strict_per_label)
    rows = [
        (label, evaluation.strict_per_label[label].f1, getattr(evaluation.partial_per_label.get(label), "f1", 0.0))
        for label in labels
    ]
    rows.append(("micro", evaluation.strict_micro.f1, evaluation.partial_micro.f1))
    figure = new_figure(7, 1.2 + 0.7 * len(rows))
    axes = figure.add_subplot()
    positions = list(range(len(rows)))
    height = 0.38
    strict = axes.barh([p - height / 2 for p in positions], [r[1] for r in rows], height, color=COLOURS["strict"])
    partial = axes.barh([p + height / 2 for p in positions], [r[2] for r in rows], height, color=COLOURS["partial"])
    for bars in (strict, partial):
        axes.bar_label(bars, fmt="%.3f", padding=3, fontsize=8)
    axes.set_yticks(positions, [r[0] for r in rows])
    axes.invert_yaxis()
    axes.set_xlim(0, 1.12)
    axes.set_xlabel("F1")
    axes.set_title(f"{evaluation.dataset} ({evaluation.documents} documents)", fontsize=10)
    axes.legend([strict, partial], ["strict", "partial"], loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def curve_figure(points: Sequence[Mapping[str, float]], path: Path) -> Path:
    epochs = [p["epoch"] for p in points]
    figure = new_figure(7, 3.2)
    loss_axes = figure.add_subplot()
    loss_axes.plot(epochs, [p["loss"] for p in points], color="#cc4125", marker="o", label="training loss")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("loss", color="#cc4125")
    f1_axes = loss_axes.twinx()
    f1_axes.plot(epochs, [p["dev_strict_f1"] for p in points], color=COLOURS["strict"], marker="o", label="dev F1")
    f1_axes.set_ylabel("dev strict F1", color=COLOURS["strict"])
    f1_axes.set_ylim(0, 1)
    loss_axes.set_title("learning curve", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def notes_curve_figure(curves: Mapping[str, Sequence[Mapping[str, float]]], reference: float, path: Path) -> Path:
    """Test strict F1 of synthetic-only students against the number of synthetic notes, one line per route, with the
    gold-trained reference as a dashed line."""
    figure = new_figure(7, 3.2)
    axes = figure.add_subplot()
    for route, points in curves.items():
        axes.plot([p["notes"] for p in points], [p["test_strict_f1"] for p in points], marker="o", label=route)
    axes.axhline(reference, color="#555555", linestyle="--", label="gold-trained teacher")
    axes.set_xlabel("synthetic notes")
    axes.set_ylabel("test strict F1")
    axes.set_ylim(0, 1)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title("learning curve over synthetic notes", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def write_figures(data: ReportData, folder: Path) -> list[Path]:
    """Write ``figure-f1-<n>-<set>.png`` per scored set and ``figure-learning-curve.png`` (when the run recorded
    one) into ``folder``; returns their paths. Each file is written under a temporary name and renamed."""
    figure_class()  # without matplotlib, fail before anything is written
    written: list[Path] = []

    def keep(name: str, draw: Callable[[Path], Path]) -> None:
        final = folder / f"{PREFIX}{name}.png"
        partial = folder / f".{final.name}.partial"
        draw(partial)
        partial.replace(final)
        written.append(final)

    for number, evaluation in enumerate(data.evaluations, start=1):
        keep(f"f1-{number}-{slug(evaluation.dataset)}", functools.partial(f1_figure, evaluation))
    if data.learning_curve:
        keep("learning-curve", functools.partial(curve_figure, data.learning_curve))
    return written
