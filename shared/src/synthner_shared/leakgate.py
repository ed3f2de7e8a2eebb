"""The leak gate: direct-identifier detectors plus an n-gram memorisation check against a hashed reference.

One gate for two users: the generator checks every note it writes (failing notes are quarantined), and the annotator
checks every note again itself before it may go to an external endpoint (it does not take the note's word for it).

The reference is built from the real notes the generator model was adapted on (``synthner adapt`` writes it beside
the adapted model; ``synthner leakcheck build-reference`` builds one from any notes). Its format lives in
:mod:`synthner_shared.ngrams`: keyed 64-bit hashes of word n-grams in a sorted array, no readable text. A note
fails when it shares a verbatim run of at least ``min_run_tokens`` tokens with the reference (consecutive matching
n-grams), or when at least ``max_overlap`` of its n-grams occur in the reference.

A note ``passed`` only when every check ran and none failed. Without a reference the memorisation check cannot run:
a note the identifier detectors let through is ``unchecked`` (never ``passed``), and an external endpoint refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synthner_shared.contracts import LeakCheckResult, LeakStatus
from synthner_shared.identifiers import detect_identifiers
from synthner_shared.ngrams import NgramReference


@dataclass(frozen=True)
class Memorisation:
    longest_run_tokens: int
    overlap: float


def memorisation(reference: NgramReference, text: str) -> Memorisation:
    """The longest verbatim token run shared with the reference, and the share of n-grams found in it."""
    found = reference.matches(text)
    if not len(found):
        return Memorisation(0, 0.0)
    longest = run = 0
    for hit in found:
        run = run + 1 if hit else 0
        longest = max(longest, run)
    return Memorisation(longest + reference.n - 1 if longest else 0, float(found.mean()))


@dataclass(frozen=True)
class LeakGate:
    """Runs every detector on a note; ``reference`` None leaves the memorisation check out (notes are then at best
    ``unchecked``)."""

    reference: NgramReference | None
    min_run_tokens: int = 20
    max_overlap: float = 0.5

    @classmethod
    def load(cls, reference: Path | None, min_run_tokens: int = 20, max_overlap: float = 0.5) -> LeakGate:
        """The gate with the reference file at ``reference`` (None: no memorisation check)."""
        return cls(NgramReference.load(reference) if reference else None, min_run_tokens, max_overlap)

    @property
    def complete(self) -> bool:
        """True when every check can run (a reference is loaded), so a note can be ``passed``."""
        return self.reference is not None

    def check(self, text: str) -> LeakCheckResult:
        found = detect_identifiers(text)
        reasons = [f"{name}: {count} match{'es' if count > 1 else ''}" for name, count in sorted(found.items())]
        detectors = ["identifiers"]
        overlap: float | None = None
        if self.reference is not None:
            detectors.append(f"ngram_memorisation(n={self.reference.n})")
            result = memorisation(self.reference, text)
            overlap = round(result.overlap, 4)
            if result.longest_run_tokens >= self.min_run_tokens:
                reasons.append(
                    f"ngram_memorisation: verbatim run of {result.longest_run_tokens} tokens "
                    f"(limit {self.min_run_tokens})"
                )
            elif result.overlap >= self.max_overlap:
                reasons.append(f"ngram_memorisation: {overlap:.0%} of n-grams in the reference")
        status: LeakStatus = "failed" if reasons else "passed" if self.complete else "unchecked"
        return LeakCheckResult(status=status, detectors=detectors, reasons=reasons, max_ngram_overlap=overlap)
