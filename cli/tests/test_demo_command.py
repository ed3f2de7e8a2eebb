"""``synthner demo``: the whole loop end to end (``--quick``), and its refusals: one line, exit code 2, no report."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from synthner.demo.options import options_from
from synthner.demo.report import Memorisation
from synthner.demo.stages import (
    MIN_STUDENT_SECONDS,
    STUDENT_SECONDS,
    TRAINING_OVERHEAD_SECONDS,
    Stages,
    build_stages,
    student_seconds,
)
from synthner.demo.transports import training_request
from synthner.main import build_parser, main
from synthner.report import ReportData, SampleNote, highlight, render
from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.local_llm import LocalLLM, free_port

REPO = Path(__file__).resolve().parents[2]
NCBI = REPO.parent / "shared" / "data" / "ncbi_disease"


def assert_refused(capsys: pytest.CaptureFixture[str], code: int, fragment: str, workdir: Path) -> None:
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("synthner demo: ")
    assert fragment in lines[0]
    assert not (workdir / "report.html").exists()
    assert not (workdir / "summary.json").exists()


def test_demo_is_registered_with_an_example() -> None:
    assert "demo" in build_parser().format_help()


def test_a_missing_gold_file_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "run"
    code = main(["demo", "--quick", "--in-process", "--workdir", str(workdir), "--gold", str(tmp_path / "no.jsonl")])
    assert_refused(capsys, code, "not found", workdir)
    assert not workdir.exists()


def test_an_unreachable_broker_is_refused_when_the_broker_is_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    workdir = tmp_path / "run"
    code = main(["demo", "--quick", "--broker", "--workdir", str(workdir)])
    assert_refused(capsys, code, "not reachable", workdir)


def test_an_api_port_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        workdir = tmp_path / "run"
        code = main(["demo", "--quick", "--in-process", "--workdir", str(workdir), "--api-port", str(port)])
    assert_refused(capsys, code, "in use", workdir)


def test_too_few_notes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--notes", "1", "--workdir", str(tmp_path / "run")])
    assert_refused(capsys, code, "at least 2", tmp_path / "run")


@pytest.mark.parametrize(
    ("option", "words"), [("--prefix-words", "0"), ("--prefix-words", "51"), ("--passage-words", "501")]
)
def test_a_prefix_or_passage_length_outside_the_generators_bounds_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, words: str
) -> None:
    code = main(["demo", option, words, "--workdir", str(tmp_path / "run")])
    assert_refused(capsys, code, option, tmp_path / "run")


def test_a_temperature_outside_the_request_s_bounds_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--temperature", "2.5", "--workdir", str(tmp_path / "run")])
    assert_refused(capsys, code, "--temperature", tmp_path / "run")


def test_the_prefix_length_passage_and_temperature_reach_the_generator(tmp_path: Path) -> None:
    args = ["--prefix-words", "7", "--passage-words", "40", "--temperature", "0.6", "--workdir", str(tmp_path / "run")]
    options = options_from(build_parser().parse_args(["demo", *args]))
    llm = LocalLLM(base_url="http://127.0.0.1:1/v1", model="m", model_path=tmp_path / "m.gguf", port=1)
    stages = build_stages(options, llm, [], NCBI / "test.jsonl", NCBI / "dev.jsonl")
    assert options.prefix_words == 7
    assert (stages.generator.prefix_words, stages.generator.passage_words) == (7, 40)
    assert stages.request.sampling.temperature == 0.6
    conditioned = options_from(build_parser().parse_args(["demo", "--mode", "label_conditioned", *args]))
    assert build_stages(conditioned, llm, [], NCBI / "test.jsonl", NCBI / "dev.jsonl").generator.passage_words == 0


def test_the_time_target_bounds_the_model_s_training_by_what_is_left_of_it(tmp_path: Path) -> None:
    llm = LocalLLM(base_url="http://127.0.0.1:1/v1", model="m", model_path=tmp_path / "m.gguf", port=1)

    def stages_for(*flags: str) -> Stages:
        options = options_from(build_parser().parse_args(["demo", *flags, "--workdir", str(tmp_path / "run")]))
        return build_stages(options, llm, [], NCBI / "test.jsonl", NCBI / "dev.jsonl", started=1000.0)

    stages = stages_for("--minutes", "10")
    assert stages.finish_by == 1600.0
    assert student_seconds(stages, 1000.0) == STUDENT_SECONDS  # time to spare: the usual bound
    assert student_seconds(stages, 1600.0 - TRAINING_OVERHEAD_SECONDS - 100) == 100.0  # a slow CPU: what is left
    assert student_seconds(stages, 1590.0) == MIN_STUDENT_SECONDS  # never less than the floor
    assert stages_for().finish_by == 1000.0 + 15 * 60  # the default target
    for untimed in (stages_for("--minutes", "0"), stages_for("--quick")):
        assert untimed.finish_by is None
        assert student_seconds(untimed, 1e9) == STUDENT_SECONDS
    request = training_request(stages, "job-1")
    assert request.hyperparameters.max_seconds is not None
    assert MIN_STUDENT_SECONDS <= request.hyperparameters.max_seconds <= STUDENT_SECONDS


def test_memorisation_finds_a_planted_copy_and_not_new_text() -> None:
    train = ["the patient had a long history of familial adenomatous polyposis of the colon and rectum"]
    copied = Memorisation.measure(train, [train[0]], ["an unrelated sentence about weather in the hills today"])
    assert copied.synthetic["ngram8_recall"] == 1.0
    assert copied.synthetic["longest_verbatim_words"] == len(train[0].split())
    assert copied.real_heldout["ngram5_recall"] == 0.0
    fresh = Memorisation.measure(train, ["a quite different note that shares nothing with the train notes at all"], [])
    assert fresh.synthetic == {"ngram5_recall": 0.0, "ngram8_recall": 0.0, "longest_verbatim_words": 0.0}


def test_the_report_escapes_note_text_and_draws_scores() -> None:
    document = Document(id="d", text="asthma", entities=[DocumentEntity(start=0, end=6, label="Disease")])
    result = evaluate_spans([document], [document], "gold:test")
    text = "<script>alert(1)</script> asthma & co"
    page = render(
        ReportData(
            title="t",
            final_line="f1=1.0000 seconds=1",
            configuration={"seed": 1},
            counts=[("generated", 1)],
            evaluations=[result],
            learning_curve=[{"epoch": 1.0, "loss": 0.5, "dev_strict_f1": 0.2}],
            samples=[SampleNote("n", text, [(26, 32, "Disease")])],
        )
    )
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "<svg" in page
    assert "polyline" in page  # the learning curve
    assert 'title="Disease">asthma<sub>Disease</sub></mark>' in highlight(text, [(26, 32, "Disease")], {})
    assert "src=" not in page  # self-contained: no external assets
    assert "<link" not in page


@pytest.mark.demo
@pytest.mark.timeout(900)
def test_demo_quick_runs_the_whole_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not (NCBI / "test.jsonl").is_file():
        pytest.skip("NCBI-disease gold data not found beside the repository")
    workdir = tmp_path / "demo"
    # In one process: deterministic for CI. `make demo` runs the stages over RabbitMQ when it is reachable.
    assert main(["demo", "--quick", "--in-process", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"f1=\d\.\d{4} f1_gold=\d\.\d{4} seconds=\d+", out[-1])
    summary = json.loads((workdir / "summary.json").read_text())
    # the teacher (2 epochs on 200 real gold train documents: bounded by size, not time, so a busy CI machine gives
    # the same model) has learnt: it is the annotator and the reference
    assert summary["f1_gold"] > 0.3
    assert summary["counts"]["generated"] >= 2
    assert summary["counts"]["annotated"] == summary["counts"]["generated"]
    assert summary["metrics"][-1]["dataset"].startswith("gold:")
    for figures in summary["memorisation"].values():  # the notes' and the real dev notes' own
        assert 0 <= figures["ngram5_recall"] <= 1
        assert 0 <= figures["ngram8_recall"] <= 1
    sample = json.loads((workdir / "sample.json").read_text())
    assert sample["response"]["status"] == 200
    assert "entities" in sample["response"]["json"]
    current = json.loads((workdir / "trainer" / "models" / "current.json").read_text())
    assert (workdir / "trainer" / "models" / "versions" / current["version"] / "status.json").is_file()
    report = (workdir / "report.html").read_text()
    assert out[-1] in report
    assert "Counts per stage" in report
    assert "<polyline" in report  # the learning curve, recorded in process
    figures = sorted(p.name for p in workdir.glob("figure-*.png"))
    assert "figure-learning-curve.png" in figures
    assert any(name.startswith("figure-f1-") for name in figures)
    for name in figures:
        assert (workdir / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert name in report  # listed among the artifacts


@pytest.mark.demo
@pytest.mark.rabbitmq
@pytest.mark.timeout(900)
def test_demo_runs_the_services_as_separate_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The smallest loop (a 20-second teacher, 3 notes, one epoch, 5 gold documents; about a minute and a half) with
    the four services as their own processes over RabbitMQ (the annotator loads the teacher); the NER API process
    answers the sample request and every process stops cleanly."""
    if not (NCBI / "test.jsonl").is_file():
        pytest.skip("NCBI-disease gold data not found beside the repository")
    workdir = tmp_path / "demo"
    arguments = [
        "--notes",
        "3",
        "--epochs",
        "1",
        "--gold-limit",
        "5",
        "--max-new-tokens",
        "160",
        "--teacher-seconds",
        "20",
        "--min-entities",  # a 20-second teacher may find no entity in 3 notes: train on them all
        "0",
    ]
    assert main(["demo", "--processes", *arguments, "--workdir", str(workdir)]) == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    assert re.fullmatch(r"f1=\d\.\d{4} f1_gold=\d\.\d{4} seconds=\d+", out[-1])
    assert "did not stop cleanly" not in captured.err
    assert sorted(p.name for p in (workdir / "logs").iterdir()) == [
        "annotator.log",
        "generator.log",
        "ner-api.log",
        "trainer.log",
    ]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["configuration"]["transport"].startswith("processes")
    sample = json.loads((workdir / "sample.json").read_text())
    assert sample["response"]["status"] == 200
    assert sample["response"]["json"]["model_version"] == summary["configuration"]["model version"]


@pytest.mark.rabbitmq
@pytest.mark.timeout(300)
def test_a_stuck_broker_run_ends_at_the_deadline_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (NCBI / "test.jsonl").is_file():
        pytest.skip("NCBI-disease gold data not found beside the repository")
    workdir = tmp_path / "run"
    # One second cannot even see the four service processes ready: the run is "stuck" at their start.
    code = main(["demo", "--quick", "--processes", "--deadline", "1", "--workdir", str(workdir)])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("synthner demo: the run did not finish within --deadline 1 s: stuck at ")
    assert "logs are in" in lines[-1]
    assert not (workdir / "report.html").exists()
    assert not (workdir / "summary.json").exists()
