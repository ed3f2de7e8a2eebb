"""Alignment of mentions to offsets: normalisation, repeats, overlaps, drops, and properties over arbitrary Unicode."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from synthner_annotator.alignment import ProposedMention, align_mentions
from synthner_annotator.normalization import DEFAULT_OPTIONS, fold_char, normalize, normalize_key
from synthner_shared.contracts import check_spans

LABELS = ["Disease", "Drug"]


def keys(text: str, mentions: list[tuple[str, str]], **options: object) -> list[tuple[int, int, str]]:
    report = align_mentions(text, [ProposedMention(label, m) for label, m in mentions], LABELS, **options)  # type: ignore[arg-type]
    return [s.key for s in report.spans]


def test_align_given_repeated_mention_uses_next_occurrence() -> None:
    text = "asthma today, asthma yesterday"
    assert keys(text, [("Disease", "asthma"), ("Disease", "asthma")]) == [(0, 6, "Disease"), (14, 20, "Disease")]


def test_align_given_all_mode_marks_every_occurrence() -> None:
    text = "asthma today, asthma yesterday"
    assert keys(text, [("Disease", "asthma")], mode="all") == [(0, 6, "Disease"), (14, 20, "Disease")]


def test_align_ignores_case_whitespace_quotes_and_dashes() -> None:
    text = "Known  Crohn\u2019s\ndisease and type\u20112 diabetes."
    assert keys(text, [("Disease", "crohn's disease"), ("Disease", "Type-2 Diabetes")]) == [
        (7, 22, "Disease"),
        (27, 42, "Disease"),
    ]


def test_align_matches_composed_and_decomposed_forms_and_missing_accents() -> None:
    text = "Dolor en la regio\u0301n lumbar; paciente Garci\u0301a."
    assert keys(text, [("Disease", "región lumbar")]) == [(12, 26, "Disease")]
    assert keys("Paciente García.", [("Disease", "Garcia")]) == [(9, 15, "Disease")]


def test_a_letter_is_not_found_inside_an_accented_letter_while_the_plain_letter_occurs() -> None:
    # found by hypothesis: "a" matched the base of "à" (decomposed in the normalised view) at a word boundary
    assert keys("0A:\u00c0", [("Disease", "A")]) == [(1, 2, "Disease")]
    assert keys("0A:A\u0300", [("Disease", "A")]) == [(1, 2, "Disease")]
    assert keys("only \u00e0 here", [("Disease", "a")]) == [(5, 6, "Disease")]  # missing accents still match


def test_align_prefers_exact_case_among_equal_candidates() -> None:
    assert keys("was seen for WAS", [("Disease", "WAS")]) == [(13, 16, "Disease")]


def test_align_prefers_word_boundaries() -> None:
    assert keys("hospital visit, sex H.", [("Disease", "H")]) == [(20, 21, "Disease")]


def test_align_prefers_a_standalone_occurrence_over_part_of_a_hyphenated_compound() -> None:
    text = "the PWS-IC deletion seen in PWS infants"
    assert keys(text, [("Disease", "PWS")]) == [(28, 31, "Disease")]
    assert keys(text, [("Disease", "PWS"), ("Disease", "PWS")]) == [(4, 7, "Disease"), (28, 31, "Disease")]


def test_align_given_unknown_mention_drops_and_counts_it() -> None:
    report = align_mentions(
        "fever and cough",
        [ProposedMention("Disease", "fever"), ProposedMention("Disease", "malaria"), ProposedMention("Organ", "cough")],
        LABELS,
    )
    assert [s.key for s in report.spans] == [(0, 5, "Disease")]
    assert (report.not_found, report.unknown_label, report.aligned, report.dropped) == (1, 1, 1, 2)
    assert report.stats().mentions_found == 3


def test_align_matches_labels_ignoring_case() -> None:
    assert keys("fever", [("disease", "fever")]) == [(0, 5, "Disease")]


def test_align_given_overlap_keeps_longest_by_default() -> None:
    text = "breast cancer"
    assert keys(text, [("Disease", "cancer"), ("Disease", "breast cancer")]) == [(0, 13, "Disease")]
    report = align_mentions(text, [ProposedMention("Disease", "cancer"), ProposedMention("Drug", "breast")], LABELS)
    assert len(report.spans) == 2


def test_align_given_first_policy_keeps_earliest_proposal() -> None:
    text = "breast cancer"
    mentions = [("Disease", "cancer"), ("Drug", "breast cancer")]
    assert keys(text, mentions, overlap_policy="first") == [(7, 13, "Disease")]


def test_align_given_shuffled_list_still_prefers_non_nested_occurrence() -> None:
    text = "breast cancer runs in the family; cancer was found."
    mentions = [("Disease", "cancer"), ("Disease", "breast cancer")]
    assert keys(text, mentions) == [(0, 13, "Disease"), (34, 40, "Disease")]


def test_align_given_more_mentions_than_occurrences_drops_the_extra() -> None:
    report = align_mentions("fever", [ProposedMention("Disease", "fever")] * 2, LABELS)
    assert report.no_free_occurrence == 1
    assert len(report.spans) == 1


def test_align_given_hint_takes_nearest_occurrence() -> None:
    text = "fever, then fever again"
    report = align_mentions(text, [ProposedMention("Disease", "fever", hint=11)], LABELS)
    assert [s.key for s in report.spans] == [(12, 17, "Disease")]


def test_align_given_blank_mention_drops_it() -> None:
    report = align_mentions("fever", [ProposedMention("Disease", "  \u200b ")], LABELS)
    assert report.spans == []
    assert report.not_found == 1


def test_normalize_maps_every_character_back_inside_the_original() -> None:
    view = normalize("Stra\u00dfe \ufb01ne  \u2013 x")
    assert view.text == "strasse fine - x"
    assert all(0 <= a < b <= len("Stra\u00dfe \ufb01ne  \u2013 x") for a, b in zip(view.starts, view.ends, strict=True))


@given(st.text(min_size=1, max_size=120), st.data())
def test_any_substring_is_found_and_maps_to_an_equivalent_span(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    mention = text[start:end]
    report = align_mentions(text, [ProposedMention("Disease", mention)], LABELS)
    if not normalize_key(mention):
        assert report.spans == []
        assert report.not_found == 1
        return
    assert len(report.spans) == 1
    span = report.spans[0]
    assert 0 <= span.start < span.end <= len(text)
    assert normalize_key(text[span.start : span.end]) == normalize_key(mention)


@given(
    st.text(min_size=1, max_size=200),
    st.lists(st.tuples(st.sampled_from(["Disease", "Drug", "Other"]), st.text(max_size=12)), max_size=12),
    st.sampled_from(["in_order", "all"]),
    st.sampled_from(["longest", "first"]),
)
def test_alignment_always_returns_valid_spans_and_balanced_counts(
    text: str, mentions: list[tuple[str, str]], mode: str, policy: str
) -> None:
    report = align_mentions(
        text,
        [ProposedMention(label, m) for label, m in mentions],
        LABELS,
        mode=mode,  # type: ignore[arg-type]
        overlap_policy=policy,  # type: ignore[arg-type]
    )
    check_spans(text, report.spans, set(LABELS))
    stats = report.stats()
    assert stats.mentions_found == len(mentions)
    assert stats.mentions_aligned + stats.mentions_dropped == len(mentions)


@st.composite
def text_with_spans(draw: st.DrawFn) -> tuple[str, list[tuple[int, int, str]]]:
    text = draw(st.text(min_size=1, max_size=150))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    spans = [(a, b, draw(st.sampled_from(LABELS))) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
    return text, spans


@given(text_with_spans())
def test_exact_mentions_in_order_recover_a_span_of_the_same_text(case: tuple[str, list[tuple[int, int, str]]]) -> None:
    text, spans = case
    mentions = [ProposedMention(label, text[a:b]) for a, b, label in spans if normalize_key(text[a:b])]
    report = align_mentions(text, mentions, LABELS)
    check_spans(text, report.spans, set(LABELS))
    assert report.not_found == 0


def reference_normalize(text: str) -> tuple[str, list[int], list[int]]:
    """The definition, one code point at a time (the module has a faster path for ASCII)."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, char in enumerate(text):
        for piece in fold_char(char, DEFAULT_OPTIONS):
            if piece == " " and out and out[-1] == " ":
                ends[-1] = index + 1
                continue
            out.append(piece)
            starts.append(index)
            ends.append(index + 1)
    return "".join(out), starts, ends


@given(st.one_of(st.text(alphabet=st.characters(max_codepoint=127)), st.text()))
def test_normalize_agrees_with_its_definition(text: str) -> None:
    view = normalize(text)
    assert (view.text, list(view.starts), list(view.ends)) == reference_normalize(text)
