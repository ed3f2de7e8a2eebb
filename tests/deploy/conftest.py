"""Fixtures of the deployment checks: a scratch copy of the deployment files that a test may break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_FILES = ("k8s", "compose.yaml", ".env.example", ".hadolint.yaml", ".dockerignore", "deploy", "services")


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """A copy of every deployment file (and the service sources the Dockerfiles copy), laid out as in the repo."""
    for name in DEPLOY_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        else:
            shutil.copy2(source, tmp_path / name)
    for name in ("constraints.txt", "shared"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in ``path`` by ``new``; fails if ``old`` is not there (so the break really happens)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
