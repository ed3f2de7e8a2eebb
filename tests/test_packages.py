"""The layout's promises: separately installable packages, distinct import names, light images where promised."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "shared": "synthner_shared",
    "services/generator": "synthner_generator",
    "services/annotator": "synthner_annotator",
    "services/trainer": "synthner_trainer",
    "services/ner-api": "synthner_ner_api",
    "cli": "synthner",
}
LIGHT = ("services/generator", "services/annotator")  # images that must not need torch unless a model backend is on


def project(folder: str) -> dict[str, Any]:
    with (ROOT / folder / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_every_package_has_its_own_distribution_and_import_name() -> None:
    names = [project(folder)["project"]["name"] for folder in PACKAGES]
    assert len(set(names)) == len(names)
    for folder, module in PACKAGES.items():
        assert (ROOT / folder / "src" / module / "__init__.py").is_file()


@pytest.mark.parametrize("folder", LIGHT)
def test_light_services_do_not_depend_on_torch_by_default(folder: str) -> None:
    dependencies = " ".join(project(folder)["project"].get("dependencies", []))
    assert "torch" not in dependencies
    assert "transformers" not in dependencies


@pytest.mark.parametrize("module", ["synthner_shared", *(PACKAGES[folder] for folder in LIGHT)])
def test_light_package_imports_without_torch(module: str) -> None:
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_shared_never_imports_a_service() -> None:
    for path in (ROOT / "shared" / "src").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for module in [m for m in PACKAGES.values() if m != "synthner_shared"]:
            assert f"import {module}\n" not in text, path
            assert f"import {module}." not in text, path
            assert f"from {module} " not in text, path
            assert f"from {module}." not in text, path
