"""The leak gate: direct-identifier detectors plus an n-gram memorisation check against a hashed reference.

The reference is built from the real notes the generator model was adapted on (``synthner adapt`` writes it beside
the adapted model; ``synthner leakcheck build-reference`` builds one from any notes). Its format lives in
:mod:`synthner_shared.ngrams`: keyed 64-bit hashes of word n-grams in a sorted array, no readable text. A note
fails when it shares a verbatim run of at least ``min_run_tokens`` tokens with the reference (consecutive matching
n-grams), or when at least ``max_overlap`` of its n-grams occur in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthner_shared.contracts import LeakCheckResult
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
    """Runs every detector on a note; ``reference`` None skips only the memorisation check."""

    reference: NgramReference | None
    min_run_tokens: int = 20
    max_overlap: float = 0.5

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
        return LeakCheckResult(
            status="failed" if reasons else "passed", detectors=detectors, reasons=reasons, max_ngram_overlap=overlap
        )
