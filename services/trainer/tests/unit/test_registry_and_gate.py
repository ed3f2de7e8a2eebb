"""The promotion gate and model versions: both verdicts, atomic immutable versions, rollback and its pin; production
refuses to publish ungated models unless told to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from synthner_trainer.registry import ModelRegistry, VersionExistsError, decide
from synthner_trainer.settings import TrainerSettings


def test_gate_publishes_a_candidate_within_the_tolerance() -> None:
    decision = decide(0.795, 0.80, tolerance=0.01, current_version="m-1")
    assert decision.verdict == "published"
    assert decision.current_version == "m-1"


def test_gate_rejects_a_candidate_worse_than_the_tolerance_allows() -> None:
    decision = decide(0.70, 0.80, tolerance=0.01)
    assert decision.verdict == "rejected"
    assert "0.7000 < 0.8000" in decision.reason


def test_gate_publishes_the_first_model_and_says_when_nothing_was_gated() -> None:
    assert decide(0.1, None, tolerance=0.0).verdict == "published"
    ungated = decide(None, 0.9, tolerance=0.0)
    assert ungated.verdict == "published"
    assert "no gold set" in ungated.reason


def _write(content: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "config.json").write_text(content)

    return write


def test_registry_keeps_rejected_versions_and_moves_current_only_on_publish(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    first = registry.add("m-1", _write("{}"), decide(0.8, None, 0.01))
    rejected = registry.add("m-2", _write("{}"), decide(0.5, 0.8, 0.01))
    assert registry.current() == first
    assert rejected.status == "rejected"
    assert (rejected.path / "config.json").is_file()
    assert [v.name for v in registry.list()] == ["m-1", "m-2"]
    third = registry.add("m-3", _write("{}"), decide(0.81, 0.8, 0.01))
    assert registry.current() == third
    version, pin = registry.rollback("m-1", by="ops", reason="m-3 misses drugs")
    assert version == first
    assert (pin.version, pin.from_version, pin.by, pin.reason) == ("m-1", "m-3", "ops", "m-3 misses drugs")
    assert registry.current() == first
    with pytest.raises(ValueError, match="rejected"):
        registry.rollback("m-2", by="ops")


def test_a_version_published_after_a_rollback_is_held_until_the_pin_is_released(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    first = registry.add("m-1", _write("{}"), decide(0.8, None, 0.01))
    registry.add("m-2", _write("{}"), decide(0.8, 0.8, 0.01))
    _, pin = registry.rollback("m-1", by="ops")
    held = registry.add("m-3", _write("{}"), decide(0.9, 0.8, 0.01))
    assert (held.status, held.held_by) == ("published", pin)  # passed the gate, kept, not current
    assert registry.current() == first
    assert registry.release_pin() == pin
    assert registry.pinned() is None
    assert registry.current() == first  # releasing changes nothing served; the next publish moves on
    fourth = registry.add("m-4", _write("{}"), decide(0.9, 0.8, 0.01))
    assert fourth.held_by is None
    assert registry.current() == fourth


def test_a_version_that_fails_while_written_never_becomes_visible(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)

    def crash(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        registry.add("m-1", crash, decide(0.8, None, 0.01))
    assert registry.list() == []
    assert registry.current() is None
    assert not any(registry.staging_dir.iterdir())


def test_a_published_version_that_does_not_load_back_is_failed_and_never_current(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    first = registry.add("m-1", _write("{}"), decide(0.8, None, 0.01), verify=lambda folder: None)
    checked: list[Path] = []

    def does_not_load(folder: Path) -> None:
        checked.append(folder)
        raise OSError("safetensors header truncated")

    failed = registry.add("m-2", _write("{}"), decide(0.9, 0.8, 0.01), verify=does_not_load)
    assert failed.status == "failed"
    assert failed.gate.reason == "the written model did not load back: OSError: safetensors header truncated"
    assert registry.current() == first
    assert checked[0].parent == registry.staging_dir  # checked before it became visible
    assert registry.get("m-2").status == "failed"  # kept for inspection
    rejected = registry.add("m-3", _write("{}"), decide(0.1, 0.8, 0.01), verify=does_not_load)
    assert (rejected.status, len(checked)) == ("rejected", 1)  # only what the gate passed is checked


def test_versions_are_never_overwritten(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.add("m-1", _write("{}"), decide(0.8, None, 0.01))
    with pytest.raises(VersionExistsError):
        registry.add("m-1", _write("{}"), decide(0.9, None, 0.01))


def test_half_written_versions_left_by_a_crash_are_discarded_at_start(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    (registry.staging_dir / "m-9.abc").mkdir()
    assert registry.discard_staging() == 1
    assert registry.list() == []


def test_production_refuses_to_publish_without_a_gold_set_unless_told_to(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="production publishes only gated models"):
        TrainerSettings(data_dir=tmp_path, environment="production")
    TrainerSettings(data_dir=tmp_path, environment="production", gold=tmp_path / "gold.jsonl")
    told = TrainerSettings(data_dir=tmp_path, environment="production", publish_without_gold=True)
    assert told.gold is None
    assert TrainerSettings(data_dir=tmp_path).environment == "local"  # local runs publish ungated, as before
