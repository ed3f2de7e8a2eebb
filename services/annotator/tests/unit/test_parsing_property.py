"""Property tests of LLM-reply parsing: any reply either parses or raises MalformedReply (nothing else), a canonical
reply gives back exactly its mentions, items of the wrong shape are dropped and counted, damage the parser repairs
loses none of them, and a reply cut off anywhere keeps only complete leading items."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synthner_annotator.errors import MalformedReply
from synthner_annotator.parsing import ParsedReply, parse_inline_markup, parse_mention_list, plain_text_of_markup

LABELS = st.lists(st.from_regex(r"[A-Za-z][A-Za-z_]{0,9}", fullmatch=True), min_size=1, max_size=3, unique=True)
NON_BLANK = st.text(min_size=1, max_size=30).filter(lambda t: t.strip())
MENTIONS = st.lists(st.tuples(st.sampled_from(["Disease", "Drug", "Procedure"]), NON_BLANK), max_size=8)
JSONISH = st.lists(st.sampled_from([*'{}[]",:\\ \n`', "mentions", "label", "text", "a", "1"]), max_size=40).map("".join)


def canonical(mentions: list[tuple[str, str]]) -> str:
    return json.dumps({"mentions": [{"label": label, "text": text} for label, text in mentions]}, ensure_ascii=False)


def pairs(parsed: ParsedReply) -> list[tuple[str, str]]:
    return [(m.label, m.text) for m in parsed.mentions]


@given(st.one_of(st.text(max_size=200), JSONISH))
def test_any_reply_parses_or_is_reported_as_malformed(reply: str) -> None:
    try:
        parsed = parse_mention_list(reply)
    except MalformedReply:
        return
    assert all(m.label.strip() and m.text.strip() for m in parsed.mentions)


WRONG_SHAPES: list[object] = [
    {"label": "", "text": "asthma"},  # blank label
    {"label": "Disease", "text": " \n"},  # blank text
    {"label": "Disease"},  # no text
    {"text": "asthma"},  # no label
    {"label": 1, "text": "asthma"},  # a label that is not a string
    {"label": "Drug", "text": ["aspirin"]},  # a text that is not a string
    ["Disease"],  # a list, but not a (label, text) pair
    "asthma",  # not an item at all
    None,
]
MENTION_ITEM = st.tuples(st.sampled_from(["Disease", "Drug", "Procedure"]), NON_BLANK).map(
    lambda m: ({"label": m[0], "text": m[1]}, m)
)
# (the item as the reply holds it, the mention it must give, or None for an item that must be dropped and counted)
ITEMS = st.lists(st.one_of(MENTION_ITEM, st.sampled_from(WRONG_SHAPES).map(lambda item: (item, None))), max_size=10)


@given(ITEMS)
def test_items_of_the_wrong_shape_are_dropped_and_counted(items: list[tuple[object, tuple[str, str] | None]]) -> None:
    parsed = parse_mention_list(json.dumps({"mentions": [item for item, _ in items]}, ensure_ascii=False))
    assert parsed.malformed_items == sum(mention is None for _, mention in items)
    assert pairs(parsed) == [mention for _, mention in items if mention is not None]


@given(MENTIONS)
def test_a_canonical_reply_gives_back_exactly_its_mentions(mentions: list[tuple[str, str]]) -> None:
    parsed = parse_mention_list(canonical(mentions))
    assert pairs(parsed) == mentions
    assert (parsed.malformed_items, parsed.repaired) == (0, False)


@given(MENTIONS, st.sampled_from(["fence", "prose", "bare list", "trailing comma"]))
def test_repaired_damage_loses_no_mention(mentions: list[tuple[str, str]], damage: str) -> None:
    reply = canonical(mentions)
    items = json.dumps([{"label": label, "text": text} for label, text in mentions], ensure_ascii=False)
    damaged = {
        "fence": f"Here you are:\n```json\n{reply}\n```\nHope this helps.",
        "prose": f"The entities are {reply} as requested.",
        "bare list": items,
        "trailing comma": reply[:-2] + ",]}" if mentions else reply,
    }[damage]
    assert pairs(parse_mention_list(damaged)) == mentions


@given(MENTIONS.filter(bool), st.data())
def test_a_reply_cut_off_anywhere_keeps_only_complete_leading_items(
    mentions: list[tuple[str, str]], data: st.DataObject
) -> None:
    reply = canonical(mentions)
    cut = data.draw(st.integers(1, len(reply) - 1))
    try:
        parsed = parse_mention_list(reply[:cut])
    except MalformedReply:
        return
    assert pairs(parsed) == mentions[: len(parsed.mentions)]


@given(st.text(max_size=200), LABELS)
def test_inline_markup_mentions_are_the_tagged_text_at_their_hint(reply: str, labels: list[str]) -> None:
    try:
        parsed = parse_inline_markup(reply, labels)
    except MalformedReply:
        assert not reply.strip()
        return
    plain = plain_text_of_markup(reply, labels)
    folded = {label.casefold() for label in labels}
    for mention in parsed.mentions:
        assert mention.label.casefold() in folded
        assert mention.hint is not None
        assert plain[mention.hint : mention.hint + len(mention.text)] == mention.text


@pytest.mark.parametrize("depth", [10, 5_000])
def test_deeply_nested_json_is_malformed_not_a_crash(depth: int) -> None:
    with pytest.raises(MalformedReply):
        parse_mention_list("[" * depth)
