"""Progress bars: on stderr only when it is a terminal and --no-progress is not given; numbers, never note text."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from synthner.demo.progress import StageBars
from synthner.main import build_parser, main
from synthner.progress import Bar, wanted
from synthner_shared.contracts import GenerationProgress
from synthner_shared.testing import sample_annotated

NOTE_TEXT = "Patient Zyxwvut has asthma"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_are_wanted_only_on_a_terminal_without_no_progress() -> None:
    assert wanted(False, Terminal())
    assert not wanted(True, Terminal())
    assert not wanted(False, io.StringIO())


def test_a_disabled_bar_counts_and_writes_nothing() -> None:
    stream = Terminal()
    with Bar(3, "work", enabled=False, stream=stream) as bar:
        bar.advance()
        bar.update_to(3, total=4)
        bar.note(loss=0.5)
    assert (bar.count, bar.total) == (3, 4)
    assert stream.getvalue() == ""


def test_no_progress_is_accepted_before_and_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--no-progress", "documents", "check", "f"]).no_progress
    assert parser.parse_args(["documents", "check", "f", "--no-progress"]).no_progress
    assert parser.parse_args(["demo", "--no-progress"]).no_progress
    assert not parser.parse_args(["documents", "check", "f"]).no_progress


def annotate(tmp_path: Path, *extra: str) -> int:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": NOTE_TEXT}) + "\n" for i in range(3)), encoding="utf-8")
    terms = tmp_path / "terms.txt"
    terms.write_text("asthma\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    return main(
        ["annotate", "run", str(source), str(out), "--labels", "Disease", "--terms", f"Disease={terms}", *extra]
    )


def test_annotate_draws_documents_done_of_total_on_a_terminal_without_note_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert annotate(tmp_path) == 0
    drawn = terminal.getvalue()
    assert "annotating" in drawn
    assert "3/3" in drawn
    assert "Zyxwvut" not in drawn
    assert "Zyxwvut" not in capsys.readouterr().out


def test_no_progress_draws_nothing_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert annotate(tmp_path, "--no-progress") == 0
    assert "annotating" not in terminal.getvalue()


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert annotate(tmp_path) == 0
    assert "annotating" not in capsys.readouterr().err


def test_the_demo_bars_follow_generation_then_annotation() -> None:
    bars = StageBars(4, "off")
    bars.see(GenerationProgress(producer="t", correlation_id="j", job_id="j", event="part", requested=2, generated=2))
    bars.see(sample_annotated(seed=1, target_chars=120, spans=1))
    bars.see(
        GenerationProgress(
            producer="t",
            correlation_id="j",
            job_id="j",
            event="part",
            first_index=2,
            requested=2,
            generated=1,
            rejected=1,
        )
    )
    assert (bars.generation.count, bars.generation.total) == (4, 4)
    assert bars.annotation.total == 3  # once generation is done, annotation counts the notes generated
    bars.see(sample_annotated(seed=2, target_chars=120, spans=1))
    assert bars.annotation.count == 2
    bars.close()


def test_without_a_terminal_the_demo_writes_a_plain_line_at_each_tenth(capsys: pytest.CaptureFixture[str]) -> None:
    bars = StageBars(20, "lines")
    for first in range(0, 20, 4):
        bars.see(
            GenerationProgress(
                producer="t", correlation_id="j", job_id="j", event="part", first_index=first, requested=4, generated=4
            )
        )
    bars.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "generating notes: 4/20 notes (generated=4, other=0)"  # 2 tenths crossed: one line
    assert lines[-1] == "generating notes: 20/20 notes (generated=20, other=0)"
    assert len(lines) == 5


def test_a_bar_without_a_total_writes_no_lines_until_it_has_one() -> None:
    stream = io.StringIO()
    bar = Bar(None, "training", enabled=False, unit="step", lines=stream)
    bar.advance(5)
    assert stream.getvalue() == ""
    bar.note(epoch=0.5)
    bar.update_to(10, total=20)
    assert stream.getvalue() == "training: 10/20 steps (epoch=0.5)\n"
    bar.update_to(11)
    assert stream.getvalue().count("\n") == 1  # 11/20 crosses no new tenth
