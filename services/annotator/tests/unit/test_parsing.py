"""Parsing and repair of LLM replies (JSON mention lists and inline markup)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from synthner_annotator.alignment import ProposedMention, align_mentions
from synthner_annotator.errors import MalformedReply
from synthner_annotator.parsing import parse_inline_markup, parse_mention_list
from synthner_annotator.prompts import markup

LABELS = ["Disease", "Drug"]


def pairs(reply: str) -> list[tuple[str, str]]:
    return [(m.label, m.text) for m in parse_mention_list(reply).mentions]


def test_parse_canonical_object() -> None:
    assert pairs('{"mentions": [{"label": "Disease", "text": "asthma"}]}') == [("Disease", "asthma")]


@pytest.mark.parametrize(
    "reply",
    [
        'Sure! Here it is:\n```json\n{"mentions": [{"label": "Disease", "text": "asthma"}]}\n```\nHope it helps.',
        '[{"label": "Disease", "text": "asthma"}]',
        '{"Disease": ["asthma"]}',
        '{"mentions": [{"label": "Disease", "text": "asthma"},]}',
        '{"mentions": [{"type": "Disease", "entity": "asthma"}]}',
        '{"mentions": [{"label": "Disease", "text": "asthma"}, {"label": "Dise',
        'The answer: {"entities": [["Disease", "asthma"]]} done',
    ],
)
def test_parse_repairs_common_damage(reply: str) -> None:
    assert pairs(reply) == [("Disease", "asthma")]


@pytest.mark.parametrize("reply", ["", "   ", "I cannot help with that.", '"just a string"', "{not json at all"])
def test_parse_rejects_replies_without_a_mention_list(reply: str) -> None:
    with pytest.raises(MalformedReply):
        parse_mention_list(reply)


def test_parse_counts_items_of_the_wrong_shape() -> None:
    parsed = parse_mention_list('{"mentions": [{"label": "Disease", "text": 3}, {"label": "Drug", "text": "x"}, 7]}')
    assert [(m.label, m.text) for m in parsed.mentions] == [("Drug", "x")]
    assert parsed.malformed_items == 2


def test_parse_empty_list_is_valid() -> None:
    parsed = parse_mention_list('{"mentions": []}')
    assert parsed.mentions == []
    assert parsed.malformed_items == 0


def test_markup_mentions_carry_their_position() -> None:
    parsed = parse_inline_markup("Has <disease>asthma</disease> and takes <Drug>salbutamol</Drug>.", LABELS)
    assert parsed.mentions == [ProposedMention("Disease", "asthma", 4), ProposedMention("Drug", "salbutamol", 21)]


def test_markup_ignores_unknown_tags_and_counts_broken_ones() -> None:
    parsed = parse_inline_markup("<b>x</b> <5 mg <Disease>flu</Drug> <Drug>a", LABELS)
    assert parsed.mentions == []
    assert parsed.malformed_items == 3  # a mismatched close, an open inside an open, an unclosed tag


def test_markup_from_an_altered_reply_lands_on_the_original_text() -> None:
    original = "Pt. has hx of asthma.  Given salbutamol  today."
    reply = "Patient has history of <Disease>asthma</Disease>. Given <Drug>Salbutamol</Drug> today."
    parsed = parse_inline_markup(reply, LABELS)
    report = align_mentions(original, parsed.mentions, LABELS)
    assert [(original[s.start : s.end], s.label) for s in report.spans] == [
        ("asthma", "Disease"),
        ("salbutamol", "Drug"),
    ]


@st.composite
def text_with_spans(draw: st.DrawFn) -> tuple[str, list[tuple[int, int, str]]]:
    text = draw(st.text(alphabet=st.characters(blacklist_characters="<"), min_size=1, max_size=150))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    spans = [(a, b, draw(st.sampled_from(LABELS))) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
    return text, spans


@given(text_with_spans())
def test_markup_round_trip_recovers_the_exact_spans(case: tuple[str, list[tuple[int, int, str]]]) -> None:
    text, spans = case
    assume(text.strip())  # a blank note is never sent; a blank reply is malformed
    parsed = parse_inline_markup(markup(text, spans), LABELS)
    nonblank = [(a, b, label) for a, b, label in spans if text[a:b].strip()]
    assert [(m.hint, m.hint + len(m.text), m.label) for m in parsed.mentions if m.hint is not None] == nonblank
