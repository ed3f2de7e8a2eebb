"""Character spans <-> per-token IOB2 labels, and windows for documents longer than a model's input (torch-free).

Shared by the trainer, the annotator's encoder backend and the NER API, so training and inference encode a text
the same way.

- **Tokens and words.** A text is tokenized once, whole, by a *fast* tokenizer without special tokens; each token has
  its character offsets in the original text (the offset mapping) and the index of the pre-tokenizer word it belongs
  to (``word_ids``), split further where punctuation meets a token boundary and where words were glued together
  (``MartínezNºCol``, ``Allergan®``); with a SentencePiece tokenizer (words only at white space) tokens and words are
  split at every character-class change instead. For training, also at every gold entity boundary, so no gold span
  is lost to the tokenizer's pieces (:func:`tokenize`'s ``cuts``). Offsets are Python ``str`` indices (code points),
  like the document format's.
- **Sub-token policy** (:data:`SubtokenPolicy`). Labels are assigned per *word*: a word overlapping an entity span
  gets ``B-<label>`` when it is the first word of the span and ``I-<label>`` otherwise. With ``all`` every sub-token
  of a word carries the word's label and a word is read from the mean of its sub-tokens' log-probabilities; with
  ``first`` only the first sub-token carries it (the others are masked with ``-100``, ignored by the loss) and a word
  is read from its first sub-token.
- **Decoding.** The tags of a text's words are the best *valid* IOB2 path through their log-probabilities
  (:func:`best_tag_path`, Viterbi: an ``I-x`` only after ``B-x`` or ``I-x``); word tags become character spans from
  the start of the first word to the end of the last word of a ``B I I`` run (:func:`decode_word_tags` also reads a
  stray ``I`` from elsewhere as opening an entity). Entity boundaries that fall inside a word therefore widen to the
  word's boundaries; :func:`iob2_round_trip` counts where that happens.
- **Windows.** A document longer than the model's window is split into overlapping windows of token indices
  (``stride`` tokens shared between neighbours), never truncated. Window starts snap back to a word start where that
  still makes progress. When decoding, each token takes the prediction of the window in which it lies furthest from
  an edge (most context on both sides).
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from synthner_shared.contracts.spans import SpanLike

IGNORE_INDEX = -100
T = TypeVar("T")
OUTSIDE = "O"


@dataclass(frozen=True, order=True)
class CharSpan:
    """A decoded entity: character offsets into the text (end exclusive) and a label."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class ScoredSpan:
    """An entity span with the model's confidence: the mean probability of its words' decoded tags (0-1)."""

    start: int
    end: int
    label: str
    score: float


class LabelOutsideSetError(ValueError):
    """A document carries an entity label that is not in the model's label set."""


def iob2_tags(labels: Iterable[str]) -> list[str]:
    """The IOB2 tag list for an entity label set: ``O`` first, then ``B-x``, ``I-x`` per label in sorted order."""
    tags = [OUTSIDE]
    for label in sorted(set(labels)):
        tags += [f"B-{label}", f"I-{label}"]
    return tags


@dataclass(frozen=True)
class TokenizedText:
    """A whole text tokenized without special tokens."""

    input_ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    def first_subtokens(self) -> list[bool]:
        """True for the first token of each word."""
        return [i == 0 or self.word_ids[i] != self.word_ids[i - 1] for i in range(len(self.word_ids))]

    def word_of_token(self) -> list[int]:
        """For each token, the index of its word in :meth:`words`."""
        index: list[int] = []
        for i in range(len(self.word_ids)):
            index.append(0 if i == 0 else index[-1] + (self.word_ids[i] != self.word_ids[i - 1]))
        return index

    def words(self) -> list[tuple[int, int, int]]:
        """``(first_token, start, end)`` per word, in order: the word's first token and its character extent."""
        words: list[tuple[int, int, int]] = []
        for i, (start, end) in enumerate(self.offsets):
            if i == 0 or self.word_ids[i] != self.word_ids[i - 1]:
                words.append((i, start, end))
            else:
                first, word_start, word_end = words[-1]
                words[-1] = (first, min(word_start, start), max(word_end, end))
        return words


TokenizerCall = Callable[..., Mapping[str, Any]]
"""A Hugging Face fast tokenizer (``tokenizer(text, ...)`` returning a ``BatchEncoding``)."""


class SlowTokenizerError(TypeError):
    """The tokenizer cannot give word ids and character offsets (it is not a fast tokenizer)."""


def tokenize(tokenizer: TokenizerCall, text: str, cuts: Collection[int] = ()) -> TokenizedText:
    """Tokenize ``text`` whole (no special tokens, no truncation), keeping offsets and word ids.

    Tokens with an empty character extent (nothing of the text) are dropped, so every token covers text. How words are
    cut depends on the tokenizer's own pre-tokenizer (:func:`splits_at_whitespace_only`); at each cut position a token
    that spans it is replaced by the tokens of its parts, each tokenized on its own, and a new word starts:

    - **WordPiece/BERT-like** (all-MiniLM-L6-v2): its words already end at every punctuation character; they are
      split further where punctuation meets a token boundary (:func:`split_words_at_punctuation`) and where words were
      glued together (:func:`is_glued_word_boundary`: ``MartínezNºCol``, ``DRAlberto``, ``Allergan®``). Not at every
      class change: on full NCBI-disease that cost MiniLM strict F1 (0.828 against 0.850-0.858 over five seeds) by
      re-cutting names such as ``BRCA1`` and ``mRNA``.
    - **SentencePiece** (multilingual-e5, XLM-R: words only at white space, pieces such as ``28.`` or ``1946)``): at
      every character-class change (:func:`is_class_boundary`, :func:`split_words_at_class_changes`), so an entity can
      start or end at every class change whatever the vocabulary.

    ``cuts`` adds positions where a word must end: the trainer passes every gold entity boundary, so a gold span cut
    inside a word (``una niet`` of ``nieta``, ``autosomal dominant disorde``) is learnt exactly as annotated rather
    than widened to the word; at inference nothing is added.
    """
    encoding: Any = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    if not getattr(tokenizer, "is_fast", False):
        raise SlowTokenizerError("a fast tokenizer (tokenizer.json) is required for offsets and word ids")
    word_ids = encoding.word_ids()
    ids, offsets, words = [], [], []
    for token_id, (start, end), word in zip(encoding["input_ids"], encoding["offset_mapping"], word_ids, strict=True):
        if end <= start or word is None:
            continue
        ids.append(int(token_id))
        offsets.append((int(start), int(end)))
        words.append(int(word))
    boundary = is_class_boundary if splits_at_whitespace_only(tokenizer) else is_glued_word_boundary
    ids, offsets, words = _split_tokens_at(tokenizer, text, ids, offsets, words, boundary=boundary, cuts=cuts)
    if boundary is is_class_boundary:
        return TokenizedText(ids, offsets, split_words_at_class_changes(text, offsets, words, also=cuts.__contains__))

    def glued_or_cut(position: int) -> bool:
        return position in cuts or is_glued_word_boundary(text, position)

    return TokenizedText(ids, offsets, split_words_at_punctuation(text, offsets, words, also=glued_or_cut))


WHITESPACE_PRE_TOKENIZERS = frozenset({"Metaspace", "WhitespaceSplit"})
"""Pre-tokenizers that cut words at white space only (SentencePiece's ``▁``), leaving ``28.`` or ``70años`` whole."""


def splits_at_whitespace_only(tokenizer: Any) -> bool:
    """Whether ``tokenizer``'s pre-tokenizer cuts words at white space only: none, or only :data:`WHITESPACE_PRE_
    TOKENIZERS` (a ``Sequence`` of them included). Read from the fast tokenizer's own description, so a model folder
    decides, not its name; a tokenizer without one (a test double) counts as BERT-like."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    pre_tokenizer = backend.pre_tokenizer  # its own JSON only: the whole tokenizer's holds the vocabulary
    description = None if pre_tokenizer is None else json.loads(pre_tokenizer.__getstate__())
    return _pre_tokenizer_types(description) <= WHITESPACE_PRE_TOKENIZERS


def _pre_tokenizer_types(description: Mapping[str, Any] | None) -> set[str]:
    if description is None:
        return set()
    if description.get("type") == "Sequence":
        return set().union(*(_pre_tokenizer_types(p) for p in description.get("pretokenizers", [])))
    return {str(description.get("type"))}


def _split_tokens_at(
    tokenizer: TokenizerCall,
    text: str,
    ids: list[int],
    offsets: list[tuple[int, int]],
    words: list[int],
    *,
    boundary: Callable[[str, int], bool],
    cuts: Collection[int],
) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    """Replace every token that spans a ``boundary`` or one of ``cuts`` by the tokens of its parts (one batched
    tokenizer call)."""
    crossing: dict[int, list[tuple[int, int]]] = {}
    for index, (start, end) in enumerate(offsets):
        checked = not _lower_case_or_digits(text[start:end])  # most pieces: no boundary inside, nothing to test
        inside = [p for p in range(start + 1, end) if p in cuts or (checked and boundary(text, p))]
        if inside:
            crossing[index] = list(itertools.pairwise([start, *inside, end]))
    if not crossing:
        return ids, offsets, words
    parts = [part for index in sorted(crossing) for part in crossing[index]]
    encoded: Any = tokenizer(
        [text[a:b] for a, b in parts], add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )
    pieces = iter(zip(parts, encoded["input_ids"], encoded["offset_mapping"], strict=True))
    new_ids, new_offsets, new_words = [], [], []
    for index, (token_id, extent, word) in enumerate(zip(ids, offsets, words, strict=True)):
        if index not in crossing:
            new_ids.append(token_id)
            new_offsets.append(extent)
            new_words.append(word)
            continue
        for _ in crossing[index]:
            (part_start, _), part_ids, part_offsets = next(pieces)
            for piece_id, (start, end) in zip(part_ids, part_offsets, strict=True):
                if end > start:
                    new_ids.append(int(piece_id))
                    new_offsets.append((part_start + int(start), part_start + int(end)))
                    new_words.append(word)
    return new_ids, new_offsets, new_words


def _lower_case_or_digits(piece: str) -> bool:
    """ASCII lower-case letters only, or digits only: neither a class change, a case change nor a symbol inside."""
    return piece.isascii() and (piece.isdigit() or (piece.isalpha() and piece.islower()))


def entity_boundaries(spans: Iterable[SpanLike]) -> set[int]:
    """Every start and end of ``spans``: the ``cuts`` with which :func:`tokenize` encodes gold for training."""
    return {position for span in spans for position in (span.start, span.end)}


def is_punctuation(char: str) -> bool:
    """BERT's punctuation: every ASCII character that is neither a letter, a digit nor a space, and Unicode P*."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def split_words_at_punctuation(
    text: str,
    offsets: Sequence[tuple[int, int]],
    words: Sequence[int],
    also: Callable[[int], bool] | None = None,
) -> list[int]:
    """Word ids in which a punctuation character at a token boundary (or any boundary position where ``also`` holds)
    also separates words.

    SentencePiece tokenizers (XLM-R, multilingual-e5) pre-tokenize at whitespace only, so ``Madrid.`` is one word
    and a per-word label would carry the full stop into the entity: only 35% of MEDDOCAN's dev entities survived
    the IOB2 round trip with multilingual-e5-small's tokenizer (93% with this split; the rest end inside a piece
    such as ``28.``). A new word therefore starts at a token that begins with punctuation or follows a token that
    ends with it (unless the two tokens overlap, as a lone ``▁`` and the character it opens do). BERT's
    pre-tokenizer already makes each such character a word of its own, so for it nothing changes.
    """

    def separates(start: int, previous_end: int) -> bool:
        if is_punctuation(text[start]) or is_punctuation(text[previous_end - 1]):
            return True
        return also is not None and also(start)

    return _split_words(offsets, words, separates)


def _split_words(
    offsets: Sequence[tuple[int, int]], words: Sequence[int], separates: Callable[[int, int], bool]
) -> list[int]:
    """Word ids in which a token also starts a new word where ``separates(start, previous_end)`` holds at a token
    boundary that does not overlap the previous token (a lone ``▁`` shares the character it opens)."""
    split: list[int] = []
    for i, (start, _) in enumerate(offsets):
        if i == 0:
            split.append(0)
            continue
        previous_end = offsets[i - 1][1]
        new_word = words[i] != words[i - 1] or (start >= previous_end and separates(start, previous_end))
        split.append(split[-1] + (1 if new_word else 0))
    return split


def character_class(char: str) -> str:
    """``L`` letters (and combining marks), ``N`` digits and other numbers, ``Z`` white space; any other character
    (punctuation, symbols) is a class of its own, so it is separated from both neighbours."""
    if char.isspace():
        return "Z"
    category = unicodedata.category(char)[0]
    if category in "LM" and not is_punctuation(char):
        return "L"
    if category == "N" and not is_punctuation(char):
        return "N"
    return char


def is_class_boundary(text: str, position: int) -> bool:
    """Whether an entity may start or end at ``position`` (``0 < position < len(text)``) with a SentencePiece
    tokenizer: the characters on either side differ in :func:`character_class`, or either is punctuation or a symbol,
    or the case changes where words were glued together: ``MartínezNºCol`` (lower, then upper) and ``DRAlberto``
    (upper, then upper and lower)."""
    before, after = character_class(text[position - 1]), character_class(text[position])
    if before != after or (len(before) == 1 and before not in "LNZ"):
        return True
    if before != "L" or not text[position].isupper():
        return False
    previous = text[position - 1]
    return previous.islower() or (previous.isupper() and position + 1 < len(text) and text[position + 1].islower())


def is_symbol(char: str) -> bool:
    """A Unicode symbol that BERT's pre-tokenizer keeps inside words (``®``, ``°``, ``±``; not ASCII ``$`` or ``+``,
    which it counts as punctuation)."""
    return unicodedata.category(char).startswith("S") and not is_punctuation(char)


def is_glued_word_boundary(text: str, position: int) -> bool:
    """Whether words glued together without a space meet at ``position`` (``0 < position < len(text)``), for a
    WordPiece tokenizer whose pre-tokenizer already cuts at white space and punctuation: a symbol beside anything but
    white space (``Allergan®``, ``®Nestlé``); three lower-case letters before a capitalised word (``MartínezNºCol``,
    ``DominguezCorreo``); capitals before a capitalised word of six letters or more (``DRAlberto``). Kept whole, as
    biomedical names must be: letter-digit changes (``BRCA1``, ``C282Y``), ``mRNA``, ``kDa``, ``HeLa``, ``McKusick``,
    ``RNase``, ``GTPases``, ``YACs``."""
    before, after = text[position - 1], text[position]
    if before.isspace() or after.isspace():
        return False
    if not (before.isascii() and after.isascii()) and is_symbol(before) != is_symbol(after):  # ASCII: no symbols
        return True
    if not after.isupper() or not before.isalpha():
        return False
    if before.islower():
        return _run(text, position - 1, -1, str.islower) >= 3 and _run(text, position + 1, 1, str.islower) >= 1
    return _run(text, position - 1, -1, str.isupper) >= 2 and _run(text, position + 1, 1, str.islower) >= 5


def _run(text: str, start: int, step: int, test: Callable[[str], bool]) -> int:
    """How many characters from ``start`` on, going ``step`` at a time, pass ``test``."""
    count, position = 0, start
    while 0 <= position < len(text) and test(text[position]):
        count += 1
        position += step
    return count


def split_words_at_class_changes(
    text: str,
    offsets: Sequence[tuple[int, int]],
    words: Sequence[int],
    also: Callable[[int], bool] | None = None,
) -> list[int]:
    """Word ids in which a character-class change at a token boundary (or any boundary position where ``also``
    holds) also separates words (SentencePiece tokenizers, after :func:`tokenize` has split the tokens that cross one).

    A new word starts at a token that begins at a class change (:func:`is_class_boundary`) unless it overlaps the
    previous token (a lone ``▁`` shares the character it opens). With e5's tokenizer, every gold span of shared/data
    whose ends are at class changes round-trips exactly (``benchmarks/representable.py``; 93% of MEDDOCAN's dev spans
    with the punctuation split alone).
    """

    def separates(start: int, _previous_end: int) -> bool:
        return is_class_boundary(text, start) or (also is not None and also(start))

    return _split_words(offsets, words, separates)


def at_class_boundaries(text: str, span: SpanLike) -> bool:
    """Whether both ends of ``span`` fall at text edges or class changes (:func:`is_class_boundary`): with a
    SentencePiece tokenizer every such span round-trips exactly; a gold span cut inside a word (``disorde``) cannot."""
    return all(p in (0, len(text)) or is_class_boundary(text, p) for p in (span.start, span.end))


@dataclass(frozen=True)
class SpecialTokens:
    """The special token ids a tokenizer puts before and after a single sequence (``[CLS] … [SEP]``)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: TokenizerCall) -> SpecialTokens:
        encoding: Any = tokenizer("a", add_special_tokens=True, return_offsets_mapping=True)
        spans = [tuple(o) for o in encoding["offset_mapping"]]
        ids = [int(i) for i in encoding["input_ids"]]
        content = [i for i, (start, end) in enumerate(spans) if end > start]
        if not content:
            raise SlowTokenizerError("could not find where the tokenizer puts the text among its special tokens")
        return cls(prefix=tuple(ids[: content[0]]), suffix=tuple(ids[content[-1] + 1 :]))

    def __len__(self) -> int:
        return len(self.prefix) + len(self.suffix)


def word_tags(tokens: TokenizedText, spans: Sequence[SpanLike]) -> list[str]:
    """IOB2 tag per word of ``tokens`` for character ``spans`` (sorted, non-overlapping)."""
    words = tokens.words()
    tags = [OUTSIDE] * len(words)
    index = 0
    for span in spans:
        while index < len(words) and words[index][2] <= span.start:
            index += 1
        first = True
        position = index
        while position < len(words) and words[position][1] < span.end:
            if tags[position] == OUTSIDE:  # a word shared by two spans keeps the first
                tags[position] = f"{'B' if first else 'I'}-{span.label}"
                first = False
            position += 1
    return tags


SubtokenPolicy = Literal["first", "all"]
"""``first``: only a word's first sub-token carries its tag (the rest ``IGNORE_INDEX``), and a word is read from its
first sub-token. ``all``: every sub-token carries the word's tag, and a word is read from the mean of its
sub-tokens' log-probabilities."""


def token_label_ids(
    tokens: TokenizedText, spans: Sequence[SpanLike], tag_ids: Mapping[str, int], subtokens: SubtokenPolicy = "first"
) -> list[int]:
    """Label id per token: the word's IOB2 tag id on its first sub-token (``all``: on every sub-token), else
    ``IGNORE_INDEX``."""
    unknown = sorted({s.label for s in spans} - {t[2:] for t in tag_ids if t != OUTSIDE})
    if unknown:
        raise LabelOutsideSetError(f"labels {unknown} are not in the label set {sorted({t[2:] for t in tag_ids})}")
    tags = word_tags(tokens, spans)
    if subtokens == "all":
        return [tag_ids[tags[word]] for word in tokens.word_of_token()]
    labels = [IGNORE_INDEX] * len(tokens)
    for word_index, (first_token, _, _) in enumerate(tokens.words()):
        labels[first_token] = tag_ids[tags[word_index]]
    return labels


def decode_word_tags(tokens: TokenizedText, tags: Sequence[str]) -> list[CharSpan]:
    """Character spans from one IOB2 tag per word (lenient: an unexpected ``I-x`` opens an entity)."""
    spans: list[CharSpan] = []
    current: CharSpan | None = None
    for (_, start, end), tag in zip(tokens.words(), tags, strict=True):
        if tag == OUTSIDE or "-" not in tag:
            if current is not None:
                spans.append(current)
            current = None
            continue
        prefix, label = tag.split("-", 1)
        if prefix == "I" and current is not None and current.label == label:
            current = CharSpan(current.start, end, label)
        else:
            if current is not None:
                spans.append(current)
            current = CharSpan(start, end, label)
    if current is not None:
        spans.append(current)
    return spans


@dataclass(frozen=True)
class TagTransitions:
    """Learned scores of tag sequences (a linear-chain CRF's), added to the words' scores when decoding.

    ``start[t]`` scores a text whose first word has tag ``t``; ``scores[p][t]`` scores tag ``t`` right after tag
    ``p``. Indices follow the model's tag list. Transitions that IOB2 forbids stay forbidden whatever their score.
    """

    start: tuple[float, ...]
    scores: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        size = len(self.start)
        if len(self.scores) != size or any(len(row) != size for row in self.scores):
            raise ValueError(f"transition scores must be {size} x {size} (one row and column per tag)")

    def to_json(self) -> dict[str, Any]:
        return {"start": list(self.start), "scores": [list(row) for row in self.scores]}

    @classmethod
    def from_json(cls, data: Any) -> TagTransitions:
        """Parse :meth:`to_json`'s form; raises ``ValueError`` on anything else."""
        try:
            start = tuple(float(v) for v in data["start"])
            scores = tuple(tuple(float(v) for v in row) for row in data["scores"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"transitions must be {{'start': [...], 'scores': [[...], ...]}} of numbers ({exc})"
            ) from exc
        return cls(start, scores)


def iob2_may_follow(previous: str, tag: str) -> bool:
    """Whether IOB2 lets ``tag`` come right after ``previous``: ``I-x`` only after ``B-x`` or ``I-x``."""
    return not tag.startswith("I-") or previous in (f"B-{tag[2:]}", tag)


def best_tag_path(
    tags: Sequence[str],
    scores: Sequence[Sequence[float]],
    outside_bias: float = 0.0,
    transitions: TagTransitions | None = None,
) -> list[int]:
    """The highest-scoring *valid* IOB2 tag sequence (Viterbi), as tag indices, one per row of ``scores``.

    ``scores[i][t]`` is the log-probability of tag ``tags[t]`` at word ``i``; a sequence's score is the sum of its
    tags' scores, plus its transition scores when ``transitions`` are given (a model trained with a CRF layer). Valid
    means every ``I-x`` follows ``B-x`` or ``I-x``, so there are no stray ``I`` tags to repair afterwards and a span's
    boundaries are decided jointly: an argmax over each word alone predicts ``O I-x I-x`` where the model was unsure
    of the first word, and the lenient reading of that drops the entity's first word. ``outside_bias`` is added to
    the ``O`` score of every word (above 0: fewer, surer entities).
    """
    if not scores:
        return []
    if transitions is not None:
        if len(transitions.start) != len(tags):
            raise ValueError(f"transitions are for {len(transitions.start)} tags, the model has {len(tags)}")
        return _best_path_with_transitions(tags, scores, outside_bias, transitions)
    outside = [t == OUTSIDE for t in tags]
    opener = [tags.index(f"B-{t[2:]}") if t.startswith("I-") and f"B-{t[2:]}" in tags else -1 for t in tags]
    inside = [t.startswith("I-") for t in tags]

    def emission(row: Sequence[float]) -> list[float]:
        return [float(v) + (outside_bias if outside[t] else 0.0) for t, v in enumerate(row)]

    score = [float("-inf") if inside[t] else v for t, v in enumerate(emission(scores[0]))]
    back: list[list[int]] = []
    for row in scores[1:]:
        best_previous = max(range(len(tags)), key=score.__getitem__)
        pointers, following = [], []
        for t, value in enumerate(emission(row)):
            if inside[t]:  # I-x continues B-x or I-x
                previous = t if opener[t] < 0 or score[t] >= score[opener[t]] else opener[t]
            else:  # O and B-x may follow anything
                previous = best_previous
            pointers.append(previous)
            following.append(score[previous] + value)
        back.append(pointers)
        score = following
    path = [max(range(len(tags)), key=score.__getitem__)]
    for pointers in reversed(back):
        path.append(pointers[path[-1]])
    return path[::-1]


def _best_path_with_transitions(
    tags: Sequence[str], scores: Sequence[Sequence[float]], outside_bias: float, transitions: TagTransitions
) -> list[int]:
    """:func:`best_tag_path` with transition scores, vectorised: every word weighs all ``tags x tags`` pairs of
    tags, which in pure Python took ten times as long (44 vs 4.4 ms for 700 words at MEDDOCAN's 43 tags). Needs
    numpy, which every reader of a model folder has (a model is the only source of transitions). Ties go to the
    lowest tag index, as in the plain path."""
    import numpy as np  # noqa: PLC0415 - only a model folder (the [model] extra, with numpy) carries transitions

    size = len(tags)
    emissions = np.asarray(scores, dtype=np.float64)
    if emissions.shape[1:] != (size,):
        raise ValueError(f"word scores must have one column per tag ({size}), got shape {emissions.shape}")
    emissions[:, [t == OUTSIDE for t in tags]] += outside_bias
    inside = np.array([t.startswith("I-") for t in tags])
    allowed = np.array([[iob2_may_follow(previous, tag) for tag in tags] for previous in tags])  # [previous, next]
    step = np.where(allowed, np.asarray(transitions.scores, dtype=np.float64), -np.inf)
    score = np.where(inside, -np.inf, emissions[0] + np.asarray(transitions.start, dtype=np.float64))
    columns = np.arange(size)
    back = np.empty((len(emissions) - 1, size), dtype=np.intp)
    for i in range(1, len(emissions)):
        candidates = score[:, None] + step
        back[i - 1] = candidates.argmax(axis=0)
        score = candidates[back[i - 1], columns] + emissions[i]
    path = [int(score.argmax())]
    for pointers in back[::-1]:
        path.append(int(pointers[path[-1]]))
    return path[::-1]


def plan_windows(tokens: TokenizedText, length: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of at most ``length`` tokens covering every token, neighbours sharing ``stride``.

    ``length`` counts text tokens only (the model's window minus its special tokens). Every token is in at least one
    window: nothing is truncated. An empty text has no window.
    """
    if length < 1:
        raise ValueError(f"window length must be at least 1 token, got {length}")
    if not 0 <= stride < length:
        raise ValueError(f"stride must be in [0, window length {length}), got {stride}")
    total = len(tokens)
    first_subtokens = tokens.first_subtokens()
    windows: list[tuple[int, int]] = []
    start = 0
    while start < total:
        end = min(start + length, total)
        windows.append((start, end))
        if end == total:
            break
        following = end - stride
        snapped = following
        while snapped > start + 1 and not first_subtokens[snapped]:
            snapped -= 1
        start = snapped if snapped > start and first_subtokens[snapped] else following
    return windows


def best_window_per_token(windows: Sequence[tuple[int, int]], total: int) -> list[int]:
    """For each token, the index of the window in which it is furthest from a window edge."""
    best = [-1] * total
    margin = [-1] * total
    for index, (start, end) in enumerate(windows):
        for position in range(start, end):
            distance = min(position - start, end - 1 - position)
            if distance > margin[position]:
                margin[position], best[position] = distance, index
    if any(b < 0 for b in best):
        raise ValueError("the windows do not cover every token")
    return best


def merge_window_predictions(
    tokens: TokenizedText, windows: Sequence[tuple[int, int]], window_predictions: Sequence[Sequence[T]]
) -> list[T]:
    """One prediction per word (a tag, a row of scores, …) from per-window sequences, one per text token of each
    window: each word takes its first sub-token's prediction from the window in which that token has most context."""
    for (start, end), predicted in zip(windows, window_predictions, strict=True):
        if len(predicted) != end - start:
            raise ValueError(f"window [{start}, {end}) has {len(predicted)} predictions, expected {end - start}")
    best = best_window_per_token(windows, len(tokens))
    merged: list[T] = []
    for first_token, _, _ in tokens.words():
        window = best[first_token]
        merged.append(window_predictions[window][first_token - windows[window][0]])
    return merged


def word_scores(
    tokens: TokenizedText,
    windows: Sequence[tuple[int, int]],
    window_scores: Sequence[Sequence[list[float]]],
    subtokens: SubtokenPolicy = "first",
) -> list[list[float]]:
    """Per word, the log-probability of each tag, from per-window rows (one per text token of each window).

    Each token is read from the window in which it has most context; ``first`` takes a word's first sub-token,
    ``all`` the mean over the word's sub-tokens.
    """
    if subtokens == "first":
        return merge_window_predictions(tokens, windows, window_scores)
    best = best_window_per_token(windows, len(tokens))
    sums: list[list[float]] = []
    counts: list[int] = []
    for index, word in enumerate(tokens.word_of_token()):
        window = best[index]
        row = window_scores[window][index - windows[window][0]]
        if word == len(sums):
            sums.append(list(row))
            counts.append(1)
        else:
            sums[word] = [a + b for a, b in zip(sums[word], row, strict=True)]
            counts[word] += 1
    return [[v / count for v in total] for total, count in zip(sums, counts, strict=True)]


@dataclass(frozen=True)
class EncodedWindow:
    """A model input: token ids with special tokens, and label ids aligned with them (``-100`` where ignored)."""

    input_ids: list[int]
    labels: list[int]


def encode_windows(
    tokens: TokenizedText,
    spans: Sequence[SpanLike],
    tag_ids: Mapping[str, int],
    special: SpecialTokens,
    *,
    max_length: int,
    stride: int,
    subtokens: SubtokenPolicy = "first",
) -> list[EncodedWindow]:
    """Training inputs of one document: every window with special tokens and labels (sub-token policy)."""
    labels = token_label_ids(tokens, spans, tag_ids, subtokens)
    windows = plan_windows(tokens, max_length - len(special), stride)
    encoded = []
    for start, end in windows:
        ids = [*special.prefix, *tokens.input_ids[start:end], *special.suffix]
        window_labels = [IGNORE_INDEX] * len(special.prefix) + labels[start:end] + [IGNORE_INDEX] * len(special.suffix)
        encoded.append(EncodedWindow(ids, window_labels))
    return encoded


@dataclass(frozen=True)
class RoundTrip:
    """How many spans survive span -> IOB2 -> span unchanged."""

    spans: int
    exact: int

    @property
    def lost(self) -> int:
        return self.spans - self.exact


def iob2_round_trip(tokens: TokenizedText, spans: Sequence[SpanLike]) -> tuple[list[CharSpan], RoundTrip]:
    """Encode spans to word tags and decode them back; count spans recovered exactly."""
    decoded = decode_word_tags(tokens, word_tags(tokens, spans))
    wanted = {CharSpan(s.start, s.end, s.label) for s in spans}
    return decoded, RoundTrip(spans=len(wanted), exact=len(wanted & set(decoded)))


@dataclass(frozen=True)
class GoldRoundTrips:
    """Gold spans through span -> word tags -> span, as the trainer encodes gold and as a predictor encodes text."""

    trained: RoundTrip
    """Words also cut at the gold boundaries (:func:`entity_boundaries`): a lost span would be learnt wrong."""
    predicted: RoundTrip
    """Words as a predictor cuts the text: a lost span cannot be predicted exactly (gold cut inside a word)."""
    decoded: list[CharSpan]
    """The spans the predictor's words give back."""


def gold_round_trips(tokenizer: TokenizerCall, text: str, spans: Sequence[SpanLike]) -> GoldRoundTrips:
    """Both round trips of a document's gold ``spans`` (:class:`GoldRoundTrips`)."""
    _, trained = iob2_round_trip(tokenize(tokenizer, text, entity_boundaries(spans)), spans)
    decoded, predicted = iob2_round_trip(tokenize(tokenizer, text), spans)
    return GoldRoundTrips(trained, predicted, decoded)
