"""Chunking of long notes, the lexicon annotator and the ensemble vote."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synthner_annotator.backends.base import AnnotationRequest
from synthner_annotator.backends.ensemble import agreement, vote
from synthner_annotator.backends.lexicon import LexiconAnnotator, LexiconSettings
from synthner_annotator.chunking import chunk_text, merge_chunk_spans
from synthner_annotator.errors import ConfigurationError
from synthner_annotator.spans import Span
from synthner_shared.contracts import Mention, check_spans

LABELS = ["Disease", "Drug"]


@given(st.text(min_size=1, max_size=3000), st.integers(200, 800), st.integers(0, 99))
def test_chunks_cover_the_text_and_ownership_partitions_it(text: str, size: int, overlap: int) -> None:
    chunks = chunk_text(text, size, overlap)
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    assert all(c.end - c.start <= size for c in chunks)
    assert chunks[0].own_start == 0
    assert chunks[-1].own_end == len(text)
    for before, after in itertools.pairwise(chunks):
        assert after.start <= before.end  # no gap
        assert before.own_end == after.own_start
        assert after.start <= after.own_start <= before.end


def test_merge_keeps_each_mention_once_with_original_offsets() -> None:
    text = ("word " * 100 + "asthma ") * 3
    chunks = chunk_text(text, 400, 100)
    per_chunk = []
    for chunk in chunks:
        piece = chunk.text_of(text)
        spans, at = [], piece.find("asthma")
        while at >= 0:
            spans.append(Span(at, at + 6, "Disease"))
            at = piece.find("asthma", at + 1)
        per_chunk.append(spans)
    merged, rejected = merge_chunk_spans(chunks, per_chunk, "longest")
    assert [text[s.start : s.end] for s in merged] == ["asthma"] * 3
    assert rejected == 0


def test_chunk_rejects_overlap_of_half_the_size() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", 100, 50)


def lexicon(**options: bool) -> LexiconAnnotator:
    settings = LexiconSettings.model_validate(
        {"terms": {"Disease": ["type 2 diabetes", "diabetes", "Crohn's disease"], "Drug": ["metformin"]}, **options}
    )
    return LexiconAnnotator(settings, LABELS)


def test_lexicon_longest_match_on_word_boundaries_ignoring_case() -> None:
    text = "Type 2  Diabetes on Metformin; prediabetes; crohn\u2019s disease"
    spans = lexicon().annotate_text(text).spans
    assert [(text[s.start : s.end], s.label) for s in spans] == [
        ("Type 2  Diabetes", "Disease"),
        ("Metformin", "Drug"),
        ("crohn\u2019s disease", "Disease"),
    ]


def test_lexicon_case_and_diacritics_options() -> None:
    assert lexicon(case_sensitive=True).annotate_text("Metformin").spans == []
    settings = LexiconSettings(terms={"Drug": ["paracetamol"]}, diacritics_sensitive=False)
    assert len(LexiconAnnotator(settings, LABELS).annotate_text("paracetamól").spans) == 1


def test_lexicon_acronyms_keep_their_case_unless_told_otherwise() -> None:
    terms = {"Disease": ["WAS", "Wiskott-Aldrich syndrome", "DM"]}
    text = "The boy was diagnosed with WAS (wiskott-aldrich syndrome); dm was ruled out."
    spans = LexiconAnnotator(LexiconSettings(terms=terms), LABELS).annotate_text(text).spans
    assert [text[s.start : s.end] for s in spans] == ["WAS", "wiskott-aldrich syndrome"]
    everything = LexiconSettings(terms=terms, acronyms_case_sensitive=False)
    spans = LexiconAnnotator(everything, LABELS).annotate_text(text).spans
    assert [text[s.start : s.end] for s in spans] == ["was", "WAS", "wiskott-aldrich syndrome", "dm", "was"]
    seeded = [Mention(label="Disease", text="WAS")]
    spans = LexiconAnnotator(LexiconSettings(), LABELS).annotate_text(text, seeded).spans
    assert [text[s.start : s.end] for s in spans] == ["WAS"]


async def test_lexicon_matches_the_entities_seeded_into_the_prompt() -> None:
    request = AnnotationRequest(
        note_id="0" * 64,
        text="Started on apixaban for atrial fibrillation.",
        language="en",
        provenance="synthetic",
        leak_status="passed",
        requested_entities=(Mention(label="Drug", text="apixaban"), Mention(label="Other", text="for")),
    )
    annotation = await lexicon().annotate(request)
    assert [(request.text[s.start : s.end], s.label) for s in annotation.spans] == [("apixaban", "Drug")]


def test_lexicon_reads_term_files_and_gold_documents(tmp_path: Path) -> None:
    terms = tmp_path / "drugs.txt"
    terms.write_text("# drugs\naspirin\n\n", encoding="utf-8")
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "1", "text": "gout", "entities": [{"start": 0, "end": 4, "label": "Disease"}]}\n')
    annotator = LexiconAnnotator(LexiconSettings(term_files={"Drug": [terms]}, document_files=[gold]), LABELS)
    text = "aspirin for gout"
    assert [(text[s.start : s.end], s.label) for s in annotator.annotate_text(text).spans] == [
        ("aspirin", "Drug"),
        ("gout", "Disease"),
    ]


def test_lexicon_refuses_labels_outside_the_set() -> None:
    with pytest.raises(ConfigurationError, match="Organ"):
        LexiconAnnotator(LexiconSettings(terms={"Organ": ["liver"]}), LABELS)


def test_vote_keeps_weighted_majority_spans_with_their_share() -> None:
    a = [Span(0, 5, "Disease"), Span(10, 15, "Drug")]
    b = [Span(0, 5, "Disease")]
    c = [Span(10, 15, "Drug"), Span(20, 25, "Drug")]
    kept, candidates, rejected = vote([(1.0, a), (1.0, b), (1.0, c)], 0.5, "ensemble")
    assert [(s.key, s.score) for s in kept] == [((0, 5, "Disease"), 0.666667), ((10, 15, "Drug"), 0.666667)]
    assert (candidates, rejected) == (3, 1)
    kept, _, _ = vote([(3.0, c), (1.0, a), (1.0, b)], 0.5, "ensemble")
    assert [s.key for s in kept] == [(10, 15, "Drug"), (20, 25, "Drug")]


def test_vote_below_half_threshold_still_returns_non_overlapping_spans() -> None:
    kept, _, _ = vote([(1.0, [Span(0, 5, "Disease")]), (1.0, [Span(2, 8, "Drug")])], 0.3, "e")
    check_spans("x" * 10, kept)
    assert len(kept) == 1


def test_agreement_is_mean_pairwise_f1() -> None:
    a, b = [Span(0, 5, "Disease")], [Span(0, 5, "Disease"), Span(6, 8, "Drug")]
    assert agreement([a, b]) == pytest.approx(2 / 3)
    assert agreement([[], []]) == 1.0
