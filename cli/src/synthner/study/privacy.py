"""Vakili's memorisation figures: word n-gram recall of synthetic notes in the training notes, the longest
verbatim run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthner_shared.ngrams import NgramReference


def longest_run(flags: Sequence[bool]) -> int:
    """Length of the longest stretch of True values."""
    best = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        best = max(best, current)
    return best


@dataclass(frozen=True)
class TrainReference:
    """Keyed word 5- and 8-gram references of the training notes, built once for every set of texts measured."""

    five: NgramReference
    eight: NgramReference

    @classmethod
    def build(cls, train_texts: Sequence[str]) -> TrainReference:
        from synthner_shared.ngrams import NgramReference

        return cls(NgramReference.build(train_texts, n=5), NgramReference.build(train_texts, n=8))

    def memorisation(self, texts: Sequence[str]) -> dict[str, float]:
        """Vakili's memorisation figures of ``texts`` against the training notes: word 5- and 8-gram recall (share
        of the texts' n-grams, with repeats, found in the training notes) and the longest verbatim word run shared
        with them (consecutive matching 5-grams: a run of k matches is k + 4 words)."""
        from synthner_shared.ngrams import ngram_recall

        longest = max((longest_run(self.five.matches(text).tolist()) for text in texts), default=0)
        return {
            "ngram5_recall": ngram_recall(self.five, texts),
            "ngram8_recall": ngram_recall(self.eight, texts),
            "longest_verbatim_words": float(longest + 4 if longest else 0),
        }


def memorisation(train_texts: Sequence[str], texts: Sequence[str]) -> dict[str, float]:
    """:meth:`TrainReference.memorisation` of ``texts`` against ``train_texts``."""
    return TrainReference.build(train_texts).memorisation(texts)
