"""API-key authentication (the NER API and the review service): keys are stored as SHA-256 hashes in a file that
is re-read when it changes.

Key file lines: ``name:scope:sha256hex`` (scope ``user`` may call the NER endpoints, ``admin`` also the admin ones);
blank lines and ``#`` comments are ignored. Rotation: add the new key's line, move clients over, delete the old line —
no restart. A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Key strength: an unsalted SHA-256 hash is safe only for a key that cannot be guessed, such as the 256-bit keys of
:func:`new_key`. Where the raw key is known it is checked (:func:`weak_key_reason`: at least ``MIN_KEY_CHARS``
characters and ``MIN_KEY_BITS`` estimated bits): :func:`key_line` refuses to hash a weak key, and an
:class:`ApiKeys` with ``min_key_bits`` refuses a presented key that is weak even when its hash is in the file. A file
holding the hash of an empty key (``$KEY`` unset when the line was made) is refused when it is read. Make keys with
``python -m synthner_shared.auth new NAME [user|admin]``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Scope = Literal["user", "admin"]
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.@-]{1,100}):(?P<scope>user|admin):(?P<digest>[0-9a-f]{64})$")

MIN_KEY_CHARS = 32
"""The shortest raw key accepted where the raw key is known."""
MIN_KEY_BITS = 128
"""The fewest estimated bits of a raw key (:func:`estimated_key_bits`)."""


class KeyFileError(ValueError):
    """The key file cannot be used; the message names the file and line, never a key."""


@dataclass(frozen=True)
class Principal:
    name: str
    scope: Scope


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def estimated_key_bits(key: str) -> float:
    """An upper estimate of a key's entropy: its length times log2 of the number of distinct characters it uses.

    It cannot prove a key random, but it refuses what people type: short keys, repeated characters, small alphabets
    (``"a" * 64`` is 0 bits, ``"passwordpassword..."`` about 2.8 bits a character). A :func:`new_key` key scores
    about 210 bits, ``openssl rand -hex 32`` about 250.
    """
    distinct = len(set(key))
    return len(key) * math.log2(distinct) if distinct > 1 else 0.0


def weak_key_reason(key: str, min_bits: int = MIN_KEY_BITS) -> str | None:
    """Why ``key`` is too weak to be stored as an unsalted hash, or None if it is strong enough (never echoes it)."""
    if len(key) < MIN_KEY_CHARS:
        return f"an API key must have at least {MIN_KEY_CHARS} characters (it has {len(key)})"
    bits = estimated_key_bits(key)
    if bits < min_bits:
        return f"an API key must carry at least {min_bits} bits (about {bits:.0f}: too few distinct characters)"
    return None


def key_line(name: str, scope: Scope, key: str) -> str:
    """The key file line of ``key`` (its SHA-256 hash); a weak key is refused with :class:`KeyFileError`."""
    reason = weak_key_reason(key)
    if reason is not None:
        raise KeyFileError(
            f"refusing to hash a weak key for {name!r}: {reason}; generate one: python -m synthner_shared.auth new NAME"
        )
    line = f"{name}:{scope}:{hash_key(key)}"
    if _LINE.match(line) is None:
        raise KeyFileError(f"{name!r} is not a valid key name (letters, digits and _.@- up to 100 characters)")
    return line


_MISTAKEN_DIGESTS = {
    hash_key(""): "the hash of an empty key (was the key's variable unset when the line was made?)",
    hash_key("\n"): "the hash of a newline (the key's variable was empty; use printf %s, not echo)",
}
"""Digests no generated key has: what a key file holds when the key was lost on the way to sha256sum."""


def parse_key_file(path: Path) -> dict[str, Principal]:
    keys: dict[str, Principal] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise KeyFileError(f"{path}:{number}: expected 'name:user|admin:<64 hex digits of SHA-256>'")
        mistake = _MISTAKEN_DIGESTS.get(match["digest"])
        if mistake is not None:
            raise KeyFileError(f"{path}:{number}: {mistake}")
        scope: Scope = "admin" if match["scope"] == "admin" else "user"
        keys[match["digest"]] = Principal(match["name"], scope)
    return keys


class ApiKeys:
    """The current key set, reloaded whenever the file's modification time or size changes.

    With ``min_key_bits`` (> 0) a presented key weaker than :func:`weak_key_reason` allows is refused even when its
    hash is in the file (a warning names the key's owner, never the key): a weak key cannot be used, and guessing
    needs keys of generated strength.
    """

    def __init__(self, path: Path, min_key_bits: int = 0) -> None:
        self._path = path
        self._min_key_bits = min_key_bits
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, Principal] = {}
        self._refresh()
        if not self._keys:
            raise KeyFileError(f"{path}: no API keys configured")

    def _refresh(self) -> None:
        stat = os.stat(self._path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            try:
                keys = parse_key_file(self._path)
            except (OSError, KeyFileError) as exc:
                if self._stamp is None:
                    raise
                log.error("keeping the previous API keys: %s", exc)
                return
            self._keys, self._stamp = keys, stamp
            log.info("loaded %d API keys", len(keys))

    def authenticate(self, key: str) -> Principal | None:
        try:
            self._refresh()
        except OSError as exc:
            log.error("API key file unreadable, keeping the previous keys: %s", type(exc).__name__)
        digest = hash_key(key)
        for known, principal in self._keys.items():
            if hmac.compare_digest(known, digest):
                return self._strong_enough(key, principal)
        return None

    def _strong_enough(self, key: str, principal: Principal) -> Principal | None:
        if self._min_key_bits <= 0:
            return principal
        reason = weak_key_reason(key, self._min_key_bits)
        if reason is None:
            return principal
        log.warning("refused the weak API key of %s: %s; give it a generated key", principal.name, reason)
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m synthner_shared.auth new NAME [user|admin]``: a fresh key on stderr, its key file line on stdout.
    ``... line NAME [user|admin]``: the line of a key read from stdin (refused if weak)."""
    parser = argparse.ArgumentParser(prog="python -m synthner_shared.auth", description=main.__doc__)
    parser.add_argument("command", choices=["new", "line"])
    parser.add_argument("name")
    parser.add_argument("scope", nargs="?", choices=["user", "admin"], default="user")
    args = parser.parse_args(argv)
    key = new_key() if args.command == "new" else sys.stdin.readline().rstrip("\r\n")
    scope: Scope = "admin" if args.scope == "admin" else "user"
    try:
        line = key_line(args.name, scope, key)
    except KeyFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "new":
        print(f"key for {args.name} (give it to the client; it is not stored): {key}", file=sys.stderr)
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
