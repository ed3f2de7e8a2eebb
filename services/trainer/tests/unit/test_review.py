"""Human review: queue selection, agreement figures, the review tables in a real SQLite store, the gate's gold."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthner_shared.documents import Document, DocumentEntity, write_documents
from synthner_trainer.pipeline import GoldSet, gate_inputs, reviewed_for_gate, with_reviewed, without_reviewed
from synthner_trainer.review.agreement import agreement, agreement_lines, cohen_kappa, pairwise_kappa, token_labels
from synthner_trainer.review.queue import Annotation, Candidate, QueuePolicy, Span, sampled, select_for_review
from synthner_trainer.review.report import agreement_html
from synthner_trainer.review.store import ReviewStore, UnknownNoteError
from synthner_trainer.review.testing import annotated
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.store import DatasetStore

TEXT = "🙂 Patient with cystic fibrosis and asthma."
CF = (TEXT.index("cystic"), TEXT.index(" and"))
ASTHMA = (TEXT.index("asthma"), TEXT.index("asthma") + len("asthma"))


def doc(text: str, *spans: tuple[int, int, str], ident: str = "d", **extra: object) -> Document:
    entities = [DocumentEntity.model_validate({"start": s, "end": e, "label": label, **extra}) for s, e, label in spans]
    return Document(id=ident, text=text, entities=entities)


def test_queue_takes_disagreement_then_low_confidence_then_a_stable_share() -> None:
    agree = (Annotation("lexicon", (Span(0, 3, "Disease"),)), Annotation("encoder:m", (Span(0, 3, "Disease", 0.9),)))
    differ = (Annotation("lexicon", (Span(0, 3, "Disease"),)), Annotation("encoder:m", ()))
    unsure = (Annotation("encoder:m", (Span(0, 3, "Disease", 0.2),)),)
    candidates = [Candidate("a", agree), Candidate("b", differ), Candidate("c", unsure)]
    policy = QueuePolicy(disagreement=True, min_confidence=0.5)
    assert select_for_review(candidates, policy) == [("b", "disagreement"), ("c", "low-confidence")]
    ids = [f"note-{n}" for n in range(2000)]
    chosen = {i for i in ids if sampled(i, 0.1, seed=3)}
    assert 150 < len(chosen) < 250  # about a tenth
    assert chosen == {i for i in reversed(ids) if sampled(i, 0.1, seed=3)}  # independent of order
    with pytest.raises(ValueError, match="share must be within"):
        QueuePolicy(share=1.5)


def test_kappa_is_one_for_equal_labels_and_zero_at_chance() -> None:
    assert cohen_kappa(["O", "D", "O"], ["O", "D", "O"]) == 1.0
    assert cohen_kappa(["D", "D", "O", "O"], ["D", "O", "D", "O"]) == pytest.approx(0.0)
    # Observed 0.8; expected 0.6*0.4 + 0.4*0.6 = 0.48; kappa (0.8 - 0.48) / 0.52.
    assert cohen_kappa(list("DDDOO"), list("DDOOO")) == pytest.approx((0.8 - 0.48) / 0.52)


def test_tokens_take_the_label_of_the_span_over_them() -> None:
    document = doc(TEXT, (*CF, "Disease"), (*ASTHMA, "Disease"))
    assert token_labels(document) == ["O", "O", "O", "Disease", "Disease", "O", "Disease", "O"]
    other = doc(TEXT, (*ASTHMA, "Disease"))
    (row,) = pairwise_kappa({"a": [document], "b": [other]})
    assert (row.first, row.second, row.documents, row.tokens) == ("a", "b", 1, 8)
    assert 0 < row.kappa < 1


def test_agreement_scores_annotators_per_label_against_reviewed_spans() -> None:
    reviewed = [doc(TEXT, (*CF, "Disease"), (*ASTHMA, "Disease"))]
    lexicon = [doc(TEXT, (*ASTHMA, "Disease"))]
    result = agreement(reviewed, {"lexicon": lexicon}, {"ann": reviewed, "bob": lexicon})
    scores = result.annotators["lexicon"].strict_per_label["Disease"]
    assert (scores.precision, scores.recall) == (1.0, 0.5)
    assert [(k.first, k.second) for k in result.between_reviewers] == [("ann", "bob")]
    lines = agreement_lines(result)
    assert "reviewed documents: 1" in lines[0]
    assert any(line.startswith("  ann ~ bob:") for line in lines)
    page = agreement_html(result)
    assert "Cohen's kappa" in page
    assert "cystic" not in page  # names and figures only, no note text
    assert "http" not in page  # no external assets


def store_with_two_annotators(path: Path) -> tuple[ReviewStore, str]:
    dataset = DatasetStore(path)
    labels = ["Disease", "Finding"]
    machine = doc(TEXT, (CF[0], CF[0] + 6, "Disease"), (*ASTHMA, "Finding"), score=0.4)
    assert dataset.add(annotated(machine, labels, backend="encoder", model="minilm-v3"))
    other = doc(TEXT, (*ASTHMA, "Disease"))
    assert not dataset.add(annotated(other, labels, backend="llm", model="gpt", prompt=("json_mentions", "v2")))
    note_id = annotated(other, labels).note_id
    dataset.add(annotated(doc("No findings today.", ident="x"), labels))
    dataset.create_version()
    return ReviewStore(dataset, owns_dataset=True), note_id


def test_review_is_kept_beside_the_machine_annotation_and_becomes_gold(tmp_path: Path) -> None:
    store, note_id = store_with_two_annotators(tmp_path / "store.sqlite3")
    version = store.dataset.versions()[-1].version
    queue = store.enqueue(version, QueuePolicy(disagreement=True))
    assert [(q.note_id, q.reason, q.reviews) for q in queue] == [(note_id, "disagreement", 0)]
    note = store.note(note_id)
    assert [(a.annotator, a.prompt) for a in note.annotations] == [
        ("encoder:minilm-v3", None),
        ("llm:gpt", "json_mentions/v2"),
    ]
    corrected = [
        DocumentEntity(start=CF[0], end=CF[1], label="Disease"),
        DocumentEntity(start=ASTHMA[0], end=ASTHMA[1], label="Disease"),
    ]
    store.save_review(note_id, "ann", corrected)
    store.save_review(note_id, "bob", corrected[1:])
    (gold,) = store.gold()
    assert gold.model_extra is not None
    assert (gold.id, gold.model_extra["reviewer"], gold.model_extra["provenance"]) == (note_id, "bob", "human")
    assert [e.label for e in gold.entities] == ["Disease"]
    assert gold.model_extra["machine_annotator"] == "encoder:minilm-v3"
    assert store.dataset.documents(version)[0].entities[1].label == "Finding"  # the machine's, untouched
    assert store.queue(version)[0].reviews == 2
    assert sorted(store.reviewer_documents()) == ["ann", "bob"]
    with pytest.raises(ValueError, match=r"entity 0 \[0, 99\)"):
        store.save_review(note_id, "ann", [DocumentEntity(start=0, end=99, label="Disease")])
    with pytest.raises(UnknownNoteError, match="no stored document"):
        store.save_review("0" * 64, "ann", [])
    store.close()
    reopened = ReviewStore.open(tmp_path / "store.sqlite3")  # durable: the reviews survive a restart
    assert [d.id for d in reopened.gold()] == [note_id]
    reopened.close()


def test_the_gate_scores_on_reviewed_notes_and_training_leaves_them_out(tmp_path: Path) -> None:
    reviewed = [doc(TEXT, (*ASTHMA, "Disease"), ident="n1")]
    training = [doc(TEXT, ident="n1"), doc("Fever and cough.", (0, 5, "Disease"), ident="n2")]
    assert [d.id for d in without_reviewed(training, reviewed)] == ["n2"]
    file_gold = GoldSet("gold:ncbi/dev.jsonl", [doc("Mild asthma.", (5, 11, "Disease"), ident="g1")])
    gate = with_reviewed(file_gold, reviewed)
    assert gate is not None
    assert (gate.name, [d.id for d in gate.documents]) == ("gold:ncbi/dev.jsonl+reviewed", ["g1", "n1"])
    assert with_reviewed(None, reviewed) == GoldSet("reviewed", reviewed)
    assert with_reviewed(file_gold, []) is file_gold
    assert TrainerSettings(data_dir=tmp_path, review_gold=True).review_gold


def test_review_gold_setting_puts_reviewed_notes_in_the_gate_and_out_of_training(tmp_path: Path) -> None:
    store, note_id = store_with_two_annotators(tmp_path / "store.sqlite3")
    store.save_review(note_id, "ann", [DocumentEntity(start=ASTHMA[0], end=ASTHMA[1], label="Disease")])
    version = store.dataset.versions()[-1].version
    training = store.dataset.documents(version)
    gold_file = tmp_path / "gold" / "dev.jsonl"
    gold_file.parent.mkdir()
    write_documents(gold_file, [doc("Mild asthma.", (5, 11, "Disease"), ident="g1")])

    off = TrainerSettings(data_dir=tmp_path, gold=gold_file)
    assert reviewed_for_gate(store.dataset, off) == []
    kept, gate = gate_inputs(training, off, reviewed_for_gate(store.dataset, off))
    assert ([d.id for d in kept], gate is not None and gate.name) == ([d.id for d in training], "gold:gold/dev.jsonl")

    on = TrainerSettings(data_dir=tmp_path, gold=gold_file, review_gold=True)
    reviewed = reviewed_for_gate(store.dataset, on)
    kept, gate = gate_inputs(training, on, reviewed)
    assert note_id not in {d.id for d in kept}
    assert len(kept) == len(training) - 1
    assert gate is not None
    assert gate.name == "gold:gold/dev.jsonl+reviewed"
    assert [d.id for d in gate.documents] == ["g1", note_id]
    assert gate.documents[1].mentions() == ["asthma"]
    store.close()
