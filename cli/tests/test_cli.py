"""The command line entry point: help, python -m, and clear errors on bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synthner.main import main


def test_python_dash_m_prints_help_with_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "synthner", "--help"], capture_output=True, text=True, check=True)
    assert "documents" in result.stdout


def test_documents_check_counts_spans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "text": "flu", "entities": [{"start": 0, "end": 3, "label": "Disease"}]}\n')
    assert main(["documents", "check", str(path)]) == 0
    assert "1 documents, 1 spans (Disease 1)" in capsys.readouterr().out


def test_a_malformed_file_exits_2_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "text": "flu"}\n{oops\n')
    assert main(["documents", "check", str(path)]) == 2
    assert f"{path}:2:" in capsys.readouterr().err
