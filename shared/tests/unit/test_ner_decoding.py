"""The decoder's best valid IOB2 path (Viterbi over word log-probabilities, with or without learned tag transitions),
checked against exhaustive search."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from synthner_shared.ner import TagTransitions, best_tag_path, iob2_tags

TAGS = iob2_tags(["A", "B"])  # O, B-A, I-A, B-B, I-B


def valid(path: tuple[int, ...]) -> bool:
    previous = "O"
    for index in path:
        tag = TAGS[index]
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def path_score(
    scores: list[list[float]], bias: float, path: tuple[int, ...], transitions: TagTransitions | None = None
) -> float:
    total = sum(row[t] + (bias if TAGS[t] == "O" else 0.0) for row, t in zip(scores, path, strict=True))
    if transitions is not None:
        total += transitions.start[path[0]] + sum(transitions.scores[a][b] for a, b in itertools.pairwise(path))
    return total


def brute_force(scores: list[list[float]], bias: float, transitions: TagTransitions | None = None) -> tuple[int, ...]:
    candidates = (p for p in itertools.product(range(len(TAGS)), repeat=len(scores)) if valid(p))
    return max(candidates, key=lambda p: path_score(scores, bias, p, transitions))


def log_softmax(row: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(v) for v in row))
    return [v - norm for v in row]


@pytest.mark.parametrize("seed", range(40))
def test_the_path_is_the_best_valid_one(seed: int) -> None:
    rng = random.Random(seed)
    length = rng.randint(1, 6)
    scores = [log_softmax([rng.gauss(0, 2) for _ in TAGS]) for _ in range(length)]
    bias = rng.choice([0.0, 0.5, -0.5])
    path = tuple(best_tag_path(TAGS, scores, bias))
    assert valid(path)
    assert path_score(scores, bias, path) == pytest.approx(path_score(scores, bias, brute_force(scores, bias)))


def random_transitions(rng: random.Random) -> TagTransitions:
    return TagTransitions(
        tuple(rng.gauss(0, 2) for _ in TAGS), tuple(tuple(rng.gauss(0, 2) for _ in TAGS) for _ in TAGS)
    )


@pytest.mark.parametrize("seed", range(40))
def test_with_learned_transitions_the_path_is_the_best_valid_one(seed: int) -> None:
    rng = random.Random(seed)
    scores = [log_softmax([rng.gauss(0, 2) for _ in TAGS]) for _ in range(rng.randint(1, 6))]
    bias = rng.choice([0.0, 0.5, -0.5])
    transitions = random_transitions(rng)
    path = tuple(best_tag_path(TAGS, scores, bias, transitions))
    assert valid(path)
    expected = brute_force(scores, bias, transitions)
    assert path_score(scores, bias, path, transitions) == pytest.approx(path_score(scores, bias, expected, transitions))


def test_zero_transitions_decode_as_none_and_forbidden_ones_stay_forbidden() -> None:
    rng = random.Random(7)
    scores = [log_softmax([rng.gauss(0, 2) for _ in TAGS]) for _ in range(8)]
    zero = TagTransitions((0.0,) * len(TAGS), ((0.0,) * len(TAGS),) * len(TAGS))
    assert best_tag_path(TAGS, scores, 0.0, zero) == best_tag_path(TAGS, scores)
    o, _, i_a, b_b, _ = range(5)
    lure = [[0.0] * len(TAGS) for _ in TAGS]
    lure[o][i_a] = lure[b_b][i_a] = 100.0  # scores IOB2 forbids
    flat = [[0.0] * len(TAGS) for _ in range(4)]
    assert valid(tuple(best_tag_path(TAGS, flat, 0.0, TagTransitions((0.0,) * len(TAGS), tuple(map(tuple, lure))))))


def test_a_learned_transition_changes_the_path() -> None:
    o, b_a, i_a = 0, 1, 2
    p = math.log
    scores = [[p(0.6), p(0.35), p(0.02), p(0.02), p(0.01)], [p(0.45), p(0.05), p(0.48), p(0.01), p(0.01)]]
    assert best_tag_path(TAGS, scores) == [o, o]
    likes_entities = [[0.0] * len(TAGS) for _ in TAGS]
    likes_entities[b_a][i_a] = 2.0  # B-A is usually followed by I-A
    transitions = TagTransitions((0.0,) * len(TAGS), tuple(map(tuple, likes_entities)))
    assert best_tag_path(TAGS, scores, 0.0, transitions) == [b_a, i_a]


def test_transitions_for_another_tag_set_are_refused() -> None:
    with pytest.raises(ValueError, match="transitions are for 3 tags, the model has 5"):
        best_tag_path(TAGS, [[0.0] * 5], 0.0, TagTransitions((0.0,) * 3, ((0.0,) * 3,) * 3))
    with pytest.raises(ValueError, match="must be 3 x 3"):
        TagTransitions((0.0,) * 3, ((0.0,) * 2,) * 3)


def test_a_stray_inside_tag_becomes_the_start_of_the_entity_when_that_scores_best() -> None:
    o, b_a, i_a = 0, 1, 2
    p = math.log
    # per word the argmax is O, I-A, I-A: the lenient reading would drop the first word of the entity
    scores = [
        [p(0.5), p(0.45), p(0.03), p(0.01), p(0.01)],
        [p(0.05), p(0.05), p(0.88), p(0.01), p(0.01)],
        [p(0.05), p(0.05), p(0.88), p(0.01), p(0.01)],
    ]
    assert best_tag_path(TAGS, scores) == [b_a, i_a, i_a]
    # a strong outside bias leaves only what beats it: nothing here
    assert best_tag_path(TAGS, scores, outside_bias=5.0) == [o, o, o]


def test_no_words_no_path() -> None:
    assert best_tag_path(TAGS, []) == []


def test_word_scores_without_one_column_per_tag_are_refused_with_transitions() -> None:
    transitions = TagTransitions((0.0,) * len(TAGS), ((0.0,) * len(TAGS),) * len(TAGS))
    with pytest.raises(ValueError, match="one column per tag"):
        best_tag_path(TAGS, [[0.0] * (len(TAGS) - 1)] * 2, 0.0, transitions)
