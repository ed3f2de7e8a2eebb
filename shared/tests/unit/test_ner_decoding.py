"""The decoder's best valid IOB2 path (Viterbi over word log-probabilities), checked against exhaustive search."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from synthner_shared.ner import best_tag_path, iob2_tags

TAGS = iob2_tags(["A", "B"])  # O, B-A, I-A, B-B, I-B


def valid(path: tuple[int, ...]) -> bool:
    previous = "O"
    for index in path:
        tag = TAGS[index]
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def brute_force(scores: list[list[float]], bias: float) -> tuple[int, ...]:
    def total(path: tuple[int, ...]) -> float:
        return sum(row[t] + (bias if TAGS[t] == "O" else 0.0) for row, t in zip(scores, path, strict=True))

    candidates = (p for p in itertools.product(range(len(TAGS)), repeat=len(scores)) if valid(p))
    return max(candidates, key=total)


def log_softmax(row: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(v) for v in row))
    return [v - norm for v in row]


@pytest.mark.parametrize("seed", range(40))
def test_the_path_is_the_best_valid_one(seed: int) -> None:
    rng = random.Random(seed)
    length = rng.randint(1, 6)
    scores = [log_softmax([rng.gauss(0, 2) for _ in TAGS]) for _ in range(length)]
    bias = rng.choice([0.0, 0.5, -0.5])
    path = best_tag_path(TAGS, scores, bias)
    assert valid(tuple(path))
    expected = brute_force(scores, bias)
    score = sum(scores[i][t] + (bias if TAGS[t] == "O" else 0.0) for i, t in enumerate(path))
    best = sum(scores[i][t] + (bias if TAGS[t] == "O" else 0.0) for i, t in enumerate(expected))
    assert score == pytest.approx(best)


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
