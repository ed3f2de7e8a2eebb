"""Every message's JSON schema is pinned: an unintended contract change fails here.

After an intended change, regenerate with ``make snapshots`` and commit the diff; an incompatible change also needs
a new ``schema_version`` (a new class beside the old one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from synthner_shared.contracts import MESSAGE_CLASSES, Envelope

SNAPSHOTS = Path(__file__).with_name("snapshots")
UPDATE = os.environ.get("SYNTHNER_UPDATE_SNAPSHOTS") == "1"


def snapshot_name(cls: type[Envelope]) -> str:
    return f"{cls.model_fields['type'].default}.v{cls.model_fields['schema_version'].default}.json"


def rendered_schema(cls: type[Envelope]) -> str:
    return json.dumps(cls.model_json_schema(mode="validation"), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda cls: cls.__name__)
def test_message_schema_matches_its_snapshot(cls: type[Envelope]) -> None:
    path = SNAPSHOTS / snapshot_name(cls)
    current = rendered_schema(cls)
    if UPDATE:
        path.write_text(current, encoding="utf-8")
    assert path.exists(), f"no snapshot for {cls.__name__}; run `make snapshots` and commit {path.name}"
    assert path.read_text(encoding="utf-8") == current, (
        f"the JSON schema of {cls.__name__} changed; if intended, run `make snapshots` and commit the diff "
        "(and bump schema_version with a new class if old consumers cannot read it)"
    )


def test_every_snapshot_belongs_to_a_message_class() -> None:
    expected = {snapshot_name(cls) for cls in MESSAGE_CLASSES}
    stale = {p.name for p in SNAPSHOTS.glob("*.json")} - expected
    assert not stale, f"snapshots without a message class: {sorted(stale)}"
