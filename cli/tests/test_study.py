"""``synthner study``: the memorisation figures, the confidence filter, refusals, and the routes end to end at tiny
size (real llama.cpp server, real encoder, the trainer's adaptation job), resumed from their artifacts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from synthner.main import main
from synthner.study import (
    Study,
    StudyError,
    StudyOptions,
    confident,
    longest_run,
    memorisation,
    overview_rows,
    report_data,
    run_routes,
)
from synthner_shared.documents import Document, DocumentEntity, read_documents, write_documents
from synthner_shared.evaluation import evaluate_spans

REPO = Path(__file__).resolve().parents[2]
NCBI = REPO.parent / "shared" / "data" / "ncbi_disease"

TRAIN = [
    "The patient was treated for familial adenomatous polyposis and later developed colorectal cancer in the colon.",
    "Hereditary breast cancer runs in this family, and two sisters carry a germline mutation of the gene.",
]


def test_longest_run_counts_the_longest_stretch_of_matches() -> None:
    assert longest_run([]) == 0
    assert longest_run([False, True, True, False, True, True, True, False]) == 3


def test_a_planted_copy_of_a_training_note_is_recalled_entirely() -> None:
    figures = memorisation(TRAIN, [TRAIN[0]])
    words = len(TRAIN[0].split())
    assert figures["ngram5_recall"] == 1.0
    assert figures["ngram8_recall"] == 1.0
    assert figures["longest_verbatim_words"] == words


def test_a_half_copied_note_is_half_recalled_and_its_verbatim_run_measured() -> None:
    copied = " ".join(TRAIN[1].split()[:10])
    fresh = "zebra quantum violet marble orbit lantern copper meadow thistle harbor"
    figures = memorisation(TRAIN, [f"{copied} {fresh}"])
    assert figures["longest_verbatim_words"] == 10
    assert 0.3 < figures["ngram5_recall"] < 0.5  # 6 of 16 five-grams lie inside the copied words


def test_text_unrelated_to_the_training_notes_has_no_recall() -> None:
    figures = memorisation(TRAIN, ["zebra quantum violet marble orbit lantern copper meadow thistle harbor"])
    assert figures == {"ngram5_recall": 0.0, "ngram8_recall": 0.0, "longest_verbatim_words": 0.0}


def _scored(*scores: float | None) -> Document:
    entities = [
        DocumentEntity.model_validate({"start": 2 * i, "end": 2 * i + 1, "label": "Disease", "score": score})
        for i, score in enumerate(scores)
    ]
    return Document(id="d", text="a b c d e f", entities=entities)


def test_a_certain_teacher_keeps_every_document_at_any_threshold() -> None:
    assert confident(_scored(1.0, 1.0), 0.99)
    assert confident(_scored(), 0.99)  # no spans: nothing uncertain
    assert confident(_scored(None), 0.99)  # a span without a score (lexicon) counts as sure


def test_the_threshold_drops_a_document_with_one_uncertain_span_and_zero_keeps_all() -> None:
    document = _scored(0.98, 0.4)
    assert not confident(document, 0.5)
    assert confident(document, 0.4)
    assert confident(document, 0.0)


def test_a_missing_gold_file_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "study",
            "--gold-train",
            str(tmp_path / "no.jsonl"),
            "--gold-dev",
            str(tmp_path / "no.jsonl"),
            "--gold-test",
            str(tmp_path / "no.jsonl"),
            "--workdir",
            str(tmp_path / "run"),
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("synthner study: --gold-train")
    assert "not found" in lines[0]


def _gold(tmp_path: Path) -> tuple[Path, Path, Path]:
    if not (NCBI / "train.jsonl").is_file():
        pytest.skip("no NCBI-disease data beside the repo")
    train = list(read_documents(NCBI / "train.jsonl"))[:16]
    dev = list(read_documents(NCBI / "dev.jsonl"))[:4]
    test = list(read_documents(NCBI / "test.jsonl"))[:4]
    paths = tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "test.jsonl"
    for path, documents in zip(paths, (train, dev, test), strict=True):
        write_documents(path, documents)
    return paths


def _tiny(tmp_path: Path, route: str, transport: str) -> StudyOptions:
    train, dev, test = _gold(tmp_path)
    return StudyOptions(
        route=route,  # type: ignore[arg-type]
        gold_train=train,
        gold_dev=dev,
        gold_test=test,
        workdir=tmp_path / "study",
        notes=10,
        epochs=1,
        max_new_tokens=256,  # SmolLM2 after one step of adaptation ends a few notes within it; the rest: "truncated"
        adapt_max_steps=1,
        adapt_block_size=64,
        adapt_samples=0,
        distill_weight=0.0,  # the plain student: the levers' own test trains the others
        transport=transport,  # type: ignore[arg-type]
    )


@pytest.mark.study
@pytest.mark.timeout(1200)  # the adaptation job and llama.cpp on 2 cores: a few minutes alone, more beside other work
def test_the_vakili_route_runs_end_to_end_in_process_and_a_rerun_resumes_from_its_artifacts(tmp_path: Path) -> None:
    options = _tiny(tmp_path, "vakili", "in-process")
    said: list[str] = []
    result = Study(options, say=said.append).run()

    workdir = options.workdir / "vakili"
    assert [r.name for r in result.stages] == ["teacher", "adapt", "generate", "annotate", "student", "privacy"]
    assert (options.workdir / "teacher" / "config.json").is_file()
    assert (workdir / "student" / "config.json").is_file()
    assert (workdir / "trainer" / "generators" / "adapted" / "model.gguf").is_file()
    generation = next(r for r in result.stages if r.name == "generate").counts
    assert generation["requested"] == 10
    assert generation["transport"] == "in-process"
    notes = [json.loads(line) for line in (workdir / "notes.jsonl").read_text(encoding="utf-8").splitlines()]
    generated = generation["generated"]
    assert isinstance(generated, int)
    assert len(notes) == generated >= 1
    assert {note["generation"]["prompt"]["name"] for note in notes} == {"continuation"}
    assert all(note["generation"]["attributes"]["prefix_words"] >= 1 for note in notes)
    synthetic = list(read_documents(workdir / "synthetic.jsonl"))
    assert len(synthetic) == result.notes == len(notes)
    assert {d.model_extra["annotator"] for d in synthetic if d.model_extra} == {"encoder"}
    assert 0.0 <= result.f1_gold <= 1.0
    assert result.f1_synthetic is not None
    assert set(result.privacy) >= {"ngram5_recall", "ngram8_recall", "longest_verbatim_words", "quarantined_share"}
    summary = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    assert summary["line"] == result.line()
    assert result.line().startswith(f"f1_gold={result.f1_gold:.4f} f1_synthetic=")

    # A rerun finds every stage's artifact and runs nothing again: same figures, no stage re-timed.
    records = [*(options.workdir / "stages").iterdir(), *(workdir / "stages").iterdir()]
    before = {p: p.stat().st_mtime_ns for p in records}
    said.clear()
    again = Study(options, say=said.append).run()
    assert said == [f"{r.name}: done before ({r.seconds:.0f} s), skipped" for r in result.stages]
    assert again.line() == result.line()
    assert {p: p.stat().st_mtime_ns for p in records} == before


@pytest.mark.study
@pytest.mark.timeout(1200)
def test_the_prefix_route_continues_gold_train_openings_with_the_llm_as_shipped(tmp_path: Path) -> None:
    options = _tiny(tmp_path, "prefix", "in-process")
    result = Study(options, say=lambda _: None).run()

    workdir = options.workdir / "prefix"
    assert [r.name for r in result.stages] == ["teacher", "generate", "annotate", "student", "privacy"]
    assert not (workdir / "trainer").exists()  # nothing adapted
    generation = next(r for r in result.stages if r.name == "generate").counts
    assert generation["llm"] == "SmolLM2-135M-Instruct"
    notes = [json.loads(line) for line in (workdir / "notes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert notes
    assert {note["generation"]["prompt"]["name"] for note in notes} == {"continuation"}
    # Each note opens with a run of words of a gold train note (the first sentence that opens with safe words); the
    # reply may follow it without a space ("Germline" + ")").
    train = [d.text.split() for d in read_documents(options.gold_train)]
    for note in notes:
        words = note["generation"]["attributes"]["prefix_words"]
        assert 1 <= words <= options.prefix_words
        runs = {" ".join(text[i : i + words]) for text in train for i in range(len(text) - words + 1)}
        assert any(note["text"].startswith(run) for run in runs)
    assert result.f1_synthetic is not None


@pytest.mark.study
@pytest.mark.rabbitmq
@pytest.mark.timeout(1200)
def test_gold_and_tang_over_rabbitmq_share_one_teacher_write_one_table_and_resume_after_a_lost_stage(
    tmp_path: Path,
) -> None:
    options = replace(_tiny(tmp_path, "gold", "broker"), curve=(4,))
    said: list[str] = []
    gold, tang = run_routes(options, ["gold", "tang"], say=said.append)
    assert [r.name for r in gold.stages] == ["teacher"]
    assert [r.name for r in tang.stages] == ["teacher", "generate", "annotate", "student", "privacy", "curve"]
    assert [r.counts["transport"] for r in tang.stages[1:3]] == ["broker", "broker"]
    assert said.count("teacher: running ...") == 1  # trained once, reused by the second route
    route = options.workdir / "tang"
    notes = [json.loads(line) for line in (route / "notes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {note["generation"]["prompt"]["name"] for note in notes} == {"clinical_note_brief"}
    assert all(note["requested_entities"] for note in notes)
    curve = next(r for r in tang.stages if r.name == "curve").counts["points"]
    assert isinstance(curve, list)
    assert [point["notes"] for point in curve] == [4, tang.notes]

    summary = json.loads((options.workdir / "summary.json").read_text(encoding="utf-8"))
    assert [row["route"] for row in summary["routes"]] == ["gold", "tang"]
    assert summary["routes"][1]["f1_synthetic"] == tang.f1_synthetic
    assert summary["routes"][1]["gap"] == pytest.approx(tang.f1_gold - (tang.f1_synthetic or 0.0))
    page = (options.workdir / "report.html").read_text(encoding="utf-8")
    assert "gold-trained teacher" in page
    assert "tang: synthetic-only student" in page
    assert (options.workdir / "figure-notes-curve.png").is_file()

    # The student's record lost (an interrupted run): only the student and what follows it run again.
    for name in ("student", "privacy", "curve"):
        (route / "stages" / f"{name}.json").unlink()
    said.clear()
    Study(replace(options, route="tang"), say=said.append).run()
    ran = [line.split(":")[0] for line in said if line.endswith("running ...")]
    assert ran == ["student", "privacy", "curve"]


def _finished_route(workdir: Path, route: str, documents: list[Document], quarantined: int) -> None:
    write_documents(workdir / route / "synthetic.jsonl", documents)
    record = {"name": "generate", "seconds": 1.0, "counts": {"requested": 10, "quarantined": quarantined}}
    (workdir / route / "stages").mkdir(parents=True)
    (workdir / route / "stages" / "generate.json").write_text(json.dumps(record), encoding="utf-8")


def test_the_mix_route_gathers_the_synthetic_notes_of_the_finished_routes(tmp_path: Path) -> None:
    options = _tiny(tmp_path, "mix", "in-process")
    vakili = [Document(id="v0", text="colon cancer", entities=[DocumentEntity(start=0, end=12, label="Disease")])]
    tang = [Document(id=f"t{i}", text="asthma", entities=[]) for i in range(2)]
    _finished_route(options.workdir, "vakili", vakili, quarantined=1)
    study = Study(options, say=lambda _: None)
    with pytest.raises(StudyError, match="two routes"):
        study._gather()
    _finished_route(options.workdir, "tang", tang, quarantined=2)
    counts = study._gather()
    assert counts == {"requested": 20, "quarantined": 3, "routes": "vakili+tang", "documents": 3}
    assert [d.id for d in read_documents(options.workdir / "mix" / "synthetic.jsonl")] == ["v0", "t0", "t1"]


def test_student_levers_train_into_folders_of_their_own_and_the_filters_apply_at_the_student(
    tmp_path: Path,
) -> None:
    """One annotated corpus, several students: the plain one and each lever's, side by side in one workdir; the
    confidence threshold and the entity floor leave notes out when the student reads the corpus, not when it is
    written."""
    plain = Study(_tiny(tmp_path, "tang", "in-process"), say=lambda _: None)
    distilled = Study(replace(plain.options, distill_weight=0.5, distill_temperature=2.0), say=lambda _: None)
    filtered = Study(replace(plain.options, min_confidence=0.9), say=lambda _: None)
    floored = Study(replace(plain.options, min_entities=1), say=lambda _: None)
    folders = {study.student_dir.name for study in (plain, distilled, filtered, floored)}
    assert folders == {"student", "student-distill-w0.5-t2", "student-conf0.9", "student-ent1"}
    assert distilled.record_path("student").name == "student-distill-w0.5-t2.json"
    assert distilled.record_path("curve").name == "curve-distill-w0.5-t2.json"
    assert distilled.record_path("annotate") == plain.record_path("annotate")  # the corpus is shared
    assert distilled._training_config(distill=True).distill_from == plain.teacher_dir
    assert distilled._training_config(distill=False).distill_from is None  # the teacher itself learns hard spans
    assert plain._training_config(distill=True).distill_from is None

    sure, unsure = _scored(0.99), _scored(0.95, 0.4)
    empty = sure.model_copy(update={"id": "e", "entities": []})
    corpus = [sure.model_copy(update={"id": f"s{i}"}) for i in range(3)] + [unsure, empty]
    write_documents(plain.synthetic_file, corpus)
    assert [d.id for d in plain._student_split()[0]] == ["s0", "s1", "s2", "d", "e"]
    assert [d.id for d in filtered._student_split()[0]] == ["s0", "s1", "s2", "e"]
    assert [d.id for d in floored._student_split()[0]] == ["s0", "s1", "s2", "d"]


def test_the_overview_reads_each_route_s_own_student_whatever_its_levers(tmp_path: Path) -> None:
    """A route's student trained with soft labels sits in ``student-distill-w…``: the overview reads its scores there
    (it looked for ``student-test.json`` and failed at the end of a whole run)."""
    document = Document(id="d", text="colon cancer", entities=[DocumentEntity(start=0, end=12, label="Disease")])
    scores = evaluate_spans([document], [document], "gold:test").model_dump_json()
    (tmp_path / "teacher-test.json").write_text(scores, encoding="utf-8")
    route = tmp_path / "tang"
    route.mkdir()
    write_documents(route / "synthetic.jsonl", [document])
    (route / "student-distill-w0.5-t2-test.json").write_text(scores, encoding="utf-8")
    summary = {
        "f1_gold": 1.0,
        "f1_synthetic": 1.0,
        "partial_f1_synthetic": 1.0,
        "gap": 0.0,
        "notes": 1,
        "privacy": {},
        "stages": [],
        "per_label": {},
        "student": "student-distill-w0.5-t2",
    }
    (route / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (row,) = overview_rows(tmp_path)
    assert row.student == "student-distill-w0.5-t2"
    names = [evaluation.dataset for evaluation in report_data(tmp_path, [row]).evaluations]
    assert names == [
        "gold-trained teacher, gold:test",
        "tang: synthetic-only student (student-distill-w0.5-t2), gold:test",
    ]
