"""Every Dockerfile passes hadolint and the image rules of issue 8; broken copies show that both checks bite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.checks import (
    DOCKERFILES,
    LIGHT_DOCKERFILES,
    ROOT,
    TORCH_FREE_DOCKERFILES,
    dockerfile_rule_errors,
    dockerignore_errors,
    hadolint_errors,
)
from tests.deploy.conftest import edit


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    assert hadolint_errors(ROOT / dockerfile, ROOT / ".hadolint.yaml") == []


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_follows_image_rules(dockerfile: str) -> None:
    light, torch_free = dockerfile in LIGHT_DOCKERFILES, dockerfile in TORCH_FREE_DOCKERFILES
    assert dockerfile_rule_errors(ROOT / dockerfile, ROOT, light, torch_free) == []


def test_every_service_has_a_dockerfile() -> None:
    for service in ("generator", "annotator", "trainer", "ner-api"):
        assert f"services/{service}/Dockerfile" in DOCKERFILES
    assert "services/trainer/Dockerfile.cuda" in DOCKERFILES
    assert "nvidia/cuda:" in (ROOT / "services/trainer/Dockerfile.cuda").read_text()
    assert "download.pytorch.org/whl/cu128" in (ROOT / "services/trainer/Dockerfile.cuda").read_text()


def test_broken_copy_fails_hadolint(deploy_copy: Path) -> None:
    dockerfile = deploy_copy / "services/generator/Dockerfile"
    edit(dockerfile, "WORKDIR /src\n", "RUN cd /src\n")
    errors = hadolint_errors(dockerfile, deploy_copy / ".hadolint.yaml")
    assert any("DL3003" in e for e in errors), errors


@pytest.mark.parametrize(
    ("dockerfile", "old", "new", "expected"),
    [
        ("services/generator/Dockerfile", "USER 10001:10001\n", "", "sets no USER"),
        ("services/generator/Dockerfile", "USER 10001:10001\n", "USER root\n", "runs as root"),
        (
            "services/ner-api/Dockerfile",
            'CMD ["python", "-m", "synthner_ner_api"]',
            "CMD python -m synthner_ner_api",
            "exec form",
        ),
        ("services/trainer/Dockerfile", "PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0", "PYTHONUNBUFFERED=1"),
        (
            "services/annotator/Dockerfile",
            "@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d",
            "",
            "not pinned by digest",
        ),
        ("services/annotator/Dockerfile", "HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK"),
        (
            "services/annotator/Dockerfile",
            'RUN if [ -n "${ANNOTATOR_EXTRAS}" ]; then pip install',
            'RUN pip install torch==2.13.0 && if [ -n "${ANNOTATOR_EXTRAS}" ]; then pip install',
            "light image",
        ),
        ("services/trainer/Dockerfile", "torch==2.13.0", "torch", "pinned version"),
        (
            "services/ner-api/Dockerfile",
            '"./shared[eval,serving,otel]"',
            'torch==2.13.0 "./shared[eval,serving,otel]"',
            "torch-free image installs torch",
        ),
        ("services/ner-api/Dockerfile", '"./shared[eval,serving,otel]"', '"./shared[eval,model]"', "model extra"),
        (
            "services/trainer/Dockerfile.cuda",
            "COPY services/trainer/ services/trainer/",
            "COPY services/trainr/ services/trainer/",
            "does not exist",
        ),
    ],
)
def test_broken_copy_fails_image_rules(deploy_copy: Path, dockerfile: str, old: str, new: str, expected: str) -> None:
    path = deploy_copy / dockerfile
    edit(path, old, new)
    errors = dockerfile_rule_errors(
        path, deploy_copy, dockerfile in LIGHT_DOCKERFILES, dockerfile in TORCH_FREE_DOCKERFILES
    )
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerignore_lets_in_what_the_dockerfile_copies(dockerfile: str) -> None:
    assert dockerignore_errors(ROOT / dockerfile, ROOT / ".dockerignore") == []


def test_dockerignore_keeps_data_and_models_out() -> None:
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in patterns  # everything out first; sources let back in one by one
    for excluded in ("**/*.gguf", "**/*.safetensors", "**/*.jsonl"):
        assert excluded in patterns


def test_broken_copy_dockerignore_excluding_a_copied_folder_fails(deploy_copy: Path) -> None:
    edit(deploy_copy / ".dockerignore", "!deploy/llama-cpp/\n", "")
    errors = dockerignore_errors(deploy_copy / "deploy/llama-cpp/Dockerfile", deploy_copy / ".dockerignore")
    assert any("deploy/llama-cpp/locate_model.py" in e for e in errors), errors
