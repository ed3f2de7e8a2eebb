"""The leak gate: direct-identifier detectors plus an n-gram memorisation check against a hashed reference.

The reference is built from the real notes the generator model was adapted on (``synthner leakcheck
build-reference``). It stores keyed 64-bit hashes of word n-grams (lower-cased ``\\w+`` tokens) in a sorted array;
no readable text. A note fails when it shares a verbatim run of at least ``min_run_tokens`` tokens with the reference
(consecutive matching n-grams), or when at least ``max_overlap`` of its n-grams occur in the reference.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from synthner_generator.identifiers import detect_identifiers
from synthner_shared.contracts import LeakCheckResult

FORMAT = "synthner-ngram-reference/1"
DEFAULT_N = 8
_TOKEN = re.compile(r"\w+")
Hashes = npt.NDArray[np.uint64]


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngram_hashes(words: list[str], n: int, key: bytes) -> Hashes:
    """Keyed hashes of every n-gram, in text order (empty when the text has fewer than n tokens)."""
    grams = (" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1))
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(g, digest_size=8, key=key).digest(), "little") for g in grams),
        dtype=np.uint64,
    )


class ReferenceError(ValueError):
    pass


@dataclass(frozen=True)
class NgramReference:
    """Sorted unique keyed n-gram hashes of the real notes, with the n and the key they were made with."""

    n: int
    key: bytes
    hashes: Hashes
    documents: int

    @classmethod
    def build(cls, texts: Iterable[str], n: int = DEFAULT_N) -> NgramReference:
        key = secrets.token_bytes(16)
        parts = [ngram_hashes(tokens(text), n, key) for text in texts]
        hashes = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)
        return cls(n, key, hashes, len(parts))

    def save(self, path: Path) -> None:
        """Write ``path`` (a .npz holding only hashes and metadata)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "n": self.n, "key": self.key.hex(), "documents": self.documents}
        with path.open("wb") as handle:
            np.savez(handle, hashes=self.hashes, meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: Path) -> NgramReference:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                hashes = data["hashes"].astype(np.uint64)
        except (OSError, KeyError, ValueError) as exc:
            raise ReferenceError(f"{path}: not an n-gram reference ({type(exc).__name__})") from None
        if meta.get("format") != FORMAT:
            raise ReferenceError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        return cls(int(meta["n"]), bytes.fromhex(meta["key"]), hashes, int(meta["documents"]))

    def matches(self, text: str) -> npt.NDArray[np.bool_]:
        """For each n-gram of the text in order: is it in the reference?"""
        hashes = ngram_hashes(tokens(text), self.n, self.key)
        if not len(self.hashes) or not len(hashes):
            return np.zeros(len(hashes), dtype=bool)
        positions = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        found: npt.NDArray[np.bool_] = self.hashes[positions] == hashes
        return found


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
