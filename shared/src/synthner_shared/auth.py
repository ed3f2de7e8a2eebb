"""API-key authentication (the NER API and the review service): keys are stored as SHA-256 hashes in a file that
is re-read when it changes.

Key file lines: ``name:scope:sha256hex`` (scope ``user`` may call the NER endpoints, ``admin`` also the admin ones);
blank lines and ``#`` comments are ignored. Rotation: add the new key's line, move clients over, delete the old line —
no restart. A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Scope = Literal["user", "admin"]
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.@-]{1,100}):(?P<scope>user|admin):(?P<digest>[0-9a-f]{64})$")


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


def parse_key_file(path: Path) -> dict[str, Principal]:
    keys: dict[str, Principal] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise KeyFileError(f"{path}:{number}: expected 'name:user|admin:<64 hex digits of SHA-256>'")
        scope: Scope = "admin" if match["scope"] == "admin" else "user"
        keys[match["digest"]] = Principal(match["name"], scope)
    return keys


class ApiKeys:
    """The current key set, reloaded whenever the file's modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
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
                return principal
        return None
