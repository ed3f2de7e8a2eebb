"""API-key authentication, shared with the review service: the code lives in :mod:`synthner_shared.auth`."""

from synthner_shared.auth import (
    ApiKeys,
    KeyFileError,
    Principal,
    Scope,
    hash_key,
    key_line,
    new_key,
    parse_key_file,
    weak_key_reason,
)

__all__ = [
    "ApiKeys",
    "KeyFileError",
    "Principal",
    "Scope",
    "hash_key",
    "key_line",
    "new_key",
    "parse_key_file",
    "weak_key_reason",
]
