"""The model store contract: its layout, round trips of its files, atomic writes, and clear errors for bad files."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from synthner_shared import model_store
from synthner_shared.model_store import (
    CorruptStoreFile,
    CurrentPointer,
    ModelStoreLayout,
    NotPublished,
    RollbackRecord,
    VersionNotFound,
    VersionStatus,
    advance_current,
    read_current,
    read_status,
    read_verdict,
    release_pin,
    roll_back,
    store_lock,
    write_current,
    write_json_atomic,
    write_status,
)


def status(verdict: model_store.Verdict = "published") -> VersionStatus:
    return VersionStatus(
        verdict=verdict,
        metric="strict micro F1 on gold:x",
        candidate=0.81,
        current=0.8,
        current_version="m-0",
        tolerance=0.01,
        reason="0.8100 >= 0.8000 - 0.01",
    )


def add_version(layout: ModelStoreLayout, name: str, verdict: model_store.Verdict = "published") -> Path:
    folder = layout.version_dir(name)
    folder.mkdir(parents=True)
    write_status(folder, status(verdict))
    return folder


def test_the_layout_names_are_the_ones_on_disk(tmp_path: Path) -> None:
    layout = ModelStoreLayout(tmp_path)
    assert layout.versions_dir == tmp_path / "versions"
    assert layout.staging_dir == tmp_path / ".staging"
    assert layout.current_file == tmp_path / "current.json"
    assert layout.status_file("m-1") == tmp_path / "versions" / "m-1" / "status.json"


def test_status_and_current_round_trip(tmp_path: Path) -> None:
    layout = ModelStoreLayout(tmp_path)
    folder = add_version(layout, "m-1")
    assert read_status(folder) == status()
    assert read_verdict(folder) == "published"
    write_current(layout, CurrentPointer(version="m-1", history=["m-1"]))
    assert read_current(layout) == CurrentPointer(version="m-1", history=["m-1"])
    assert json.loads(layout.current_file.read_text(encoding="utf-8")) == {
        "version": "m-1",
        "history": ["m-1"],
        "pinned": None,
    }


def test_a_store_without_a_current_pointer_reads_as_empty(tmp_path: Path) -> None:
    assert read_current(ModelStoreLayout(tmp_path)) == CurrentPointer(version=None, history=[])


def test_only_folders_with_a_status_are_versions(tmp_path: Path) -> None:
    layout = ModelStoreLayout(tmp_path)
    assert layout.version_names() == []
    add_version(layout, "m-2", "rejected")
    add_version(layout, "m-1")
    (layout.versions_dir / "m-3").mkdir()  # no status.json: not a version
    assert layout.version_names() == ["m-1", "m-2"]
    with pytest.raises(VersionNotFound, match="no model version 'm-3'"):
        read_status(layout.version_dir("m-3"))
    with pytest.raises(KeyError):  # a VersionNotFound is a KeyError, as a registry lookup promises
        read_verdict(layout.version_dir("m-9"))


def test_current_must_name_a_published_version_that_exists(tmp_path: Path) -> None:
    layout = ModelStoreLayout(tmp_path)
    add_version(layout, "m-1")
    add_version(layout, "m-2", "rejected")
    write_current(layout, CurrentPointer(version="m-1", history=["m-1"]))
    with pytest.raises(VersionNotFound):
        write_current(layout, CurrentPointer(version="m-9", history=["m-1", "m-9"]))
    with pytest.raises(NotPublished, match="rejected"):
        write_current(layout, CurrentPointer(version="m-2", history=["m-1", "m-2"]))
    assert read_current(layout).version == "m-1"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"verdict": "publ', "Invalid JSON"),
        (b'["published"]', "valid status.json"),
        (b'{"verdict": "maybe"}', "verdict"),
        (b"\xff\xfe", "not UTF-8"),
    ],
    ids=["truncated", "not-an-object", "unknown-verdict", "binary"],
)
def test_a_corrupt_status_is_a_clear_error_naming_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    folder = tmp_path / "versions" / "m-1"
    folder.mkdir(parents=True)
    (folder / "status.json").write_bytes(content)
    for read in (read_status, read_verdict):
        with pytest.raises(CorruptStoreFile, match=problem) as caught:
            read(folder)
        assert caught.value.path == folder / "status.json"
        assert str(folder / "status.json") in str(caught.value)


def test_a_corrupt_current_pointer_is_a_clear_error(tmp_path: Path) -> None:
    layout = ModelStoreLayout(tmp_path)
    layout.current_file.write_text('{"version": 3, "history": "m-1"}', encoding="utf-8")
    with pytest.raises(CorruptStoreFile, match=r"current\.json.*version.*history"):
        read_current(layout)


def test_a_server_reads_the_verdict_alone_but_the_full_status_needs_every_gate_field(tmp_path: Path) -> None:
    folder = tmp_path / "m-1"
    folder.mkdir()
    (folder / "status.json").write_text('{"verdict": "rejected", "added_later": 1}', encoding="utf-8")
    assert read_verdict(folder) == "rejected"
    with pytest.raises(CorruptStoreFile, match="reason"):
        read_status(folder)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "current.json"
    write_json_atomic(target, {"version": "m-1"})

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(target, {"version": "m-2"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"version": "m-1"}
    assert [p.name for p in tmp_path.iterdir()] == ["current.json"]


def test_an_atomic_write_syncs_the_data_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(source: str, target: Path) -> None:
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_json_atomic(tmp_path / "status.json", {"verdict": "published"})
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_a_rollback_pins_the_version_with_who_why_and_when_until_released(tmp_path: Path) -> None:
    layout = ModelStoreLayout(tmp_path)
    for name in ("m-1", "m-2", "m-3"):
        add_version(layout, name)
    assert advance_current(layout, "m-1") is None
    assert advance_current(layout, "m-2") is None
    at = datetime(2026, 12, 6, 1, 30, tzinfo=UTC)
    pointer = roll_back(layout, "m-1", by="ops", reason="m-2 misses drug names", at=at)
    pin = RollbackRecord(version="m-1", from_version="m-2", by="ops", reason="m-2 misses drug names", at=at)
    assert pointer == CurrentPointer(version="m-1", history=["m-1", "m-2", "m-1"], pinned=pin)
    assert read_current(layout) == pointer
    assert advance_current(layout, "m-3") == pin  # a newer publish is held: the rollback is not silently undone
    assert read_current(layout) == pointer
    released = release_pin(layout)
    assert released == CurrentPointer(version="m-1", history=["m-1", "m-2", "m-1"])
    assert release_pin(layout) == released  # nothing pinned: nothing changes
    assert advance_current(layout, "m-3") is None
    assert read_current(layout).version == "m-3"


def test_a_rollback_needs_a_published_version(tmp_path: Path) -> None:
    layout = ModelStoreLayout(tmp_path)
    add_version(layout, "m-1")
    add_version(layout, "m-2", "failed")
    advance_current(layout, "m-1")
    with pytest.raises(NotPublished, match="failed"):
        roll_back(layout, "m-2", by="ops")
    with pytest.raises(VersionNotFound):
        roll_back(layout, "m-9", by="ops")
    assert read_current(layout) == CurrentPointer(version="m-1", history=["m-1"])


def test_the_store_lock_excludes_another_holder_until_released(tmp_path: Path) -> None:
    layout = ModelStoreLayout(tmp_path)
    # Another process (or thread, with its own open file) cannot take it while it is held.
    with store_lock(layout), layout.lock_file.open("a") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with layout.lock_file.open("a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free to take
