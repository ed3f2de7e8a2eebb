"""Long runs log to a file: the terminal keeps warnings and errors, transformers' load reports and bars go nowhere
near it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from synthner.logfile import logs_to


def test_info_goes_to_the_file_and_transformers_reports_leave_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # as the CLI sets it
    log_file = tmp_path / "run.log"
    hf_logging.enable_default_handler()
    with logs_to(log_file):
        logging.getLogger("synthner.test").info("stage started")
        hf_logging.get_logger("transformers.modeling_utils").warning("BertForTokenClassification LOAD REPORT")
        assert not hf_logging.is_progress_bar_enabled()
    written = log_file.read_text()
    assert "stage started" in written
    assert "LOAD REPORT" in written
    assert "LOAD REPORT" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # restored after the block
