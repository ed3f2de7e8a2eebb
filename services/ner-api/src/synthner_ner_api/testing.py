"""Test and benchmark support: model folders served by a small lexicon predictor (the app's own Predictor port).

A lexicon "model" is a folder in the model store's layout (:mod:`synthner_shared.model_store`: ``config.json`` with
``id2label``, ``status.json``, ``metrics.json``) plus ``lexicon.json`` with a label and its words;
:func:`load_lexicon_model` is a loader for :class:`~synthner_ner_api.models.ModelRegistry`. It exercises the HTTP
layer, the registry and the hot swap without torch; tests of the real token-classification model use a folder the
trainer fitted.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp

from synthner_ner_api.auth import key_line
from synthner_ner_api.models import Predictor, SpanPrediction
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.contracts import DatasetManifest, EvaluationResult, ModelPublished, Scores
from synthner_shared.model_store import ModelStoreLayout, VersionStatus, write_status

if TYPE_CHECKING:
    import httpx

USER_KEY = "user-9dMqT_fkHqpByrwEiYlzqTugIrXKrpy1r8quzBNz"
ADMIN_KEY = "admin-mKLeJsmipmWJynEPeRAvzg6By_H5IqPXeDe0LajF"
"""Test keys of generated strength (the API refuses weak keys: ``min_key_bits``)."""
LEXICON = ["diabetes", "asthma", "肺炎", "café"]


class LexiconPredictor:
    def __init__(self, label: str, words: list[str]) -> None:
        self._label = label
        self._pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))

    def annotate(self, texts: Sequence[str]) -> list[list[SpanPrediction]]:
        return [
            [SpanPrediction(m.start(), m.end(), self._label, 0.9) for m in self._pattern.finditer(text)]
            for text in texts
        ]


def load_lexicon_model(path: Path) -> Predictor:
    spec = json.loads((path / "lexicon.json").read_text(encoding="utf-8"))
    return LexiconPredictor(spec["label"], spec["words"])


def mark_published(folder: Path) -> None:
    """Give a model folder in a store the gate's ``published`` verdict (not gated: a test model)."""
    status = VersionStatus(
        verdict="published",
        metric="none",
        candidate=None,
        current=None,
        current_version=None,
        tolerance=0.0,
        reason="a test model: published without a quality gate",
    )
    write_status(folder, status)


def write_model(store: Path, version: str, label: str, words: list[str]) -> Path:
    """Write a published lexicon model version into a model store; returns its folder."""
    folder = ModelStoreLayout(store).version_dir(version)
    folder.mkdir(parents=True)
    mark_published(folder)
    id2label = {"0": "O", "1": f"B-{label}", "2": f"I-{label}"}
    (folder / "config.json").write_text(json.dumps({"id2label": id2label}), encoding="utf-8")
    (folder / "lexicon.json").write_text(json.dumps({"label": label, "words": words}), encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps({"strict_f1": 0.5}), encoding="utf-8")
    return folder


def write_key_file(path: Path, user_key: str = USER_KEY, admin_key: str = ADMIN_KEY) -> Path:
    """A key file with one user key and one admin key (stored hashed, as in production; a weak key is refused with
    :class:`~synthner_ner_api.auth.KeyFileError`, as the API would refuse it at its first use)."""
    path.write_text(
        f"{key_line('clinic', 'user', user_key)}\n{key_line('ops', 'admin', admin_key)}\n", encoding="utf-8"
    )
    return path


def lexicon_api_settings(folder: Path, **overrides: object) -> NerApiSettings:
    """Settings of an API in ``api_keys`` mode over a fresh model store in ``folder`` holding lexicon version v1."""
    store = folder / "models"
    write_model(store, "v1", "Disease", LEXICON)
    values: dict[str, object] = {
        "auth_mode": "api_keys",
        "api_keys_file": write_key_file(folder / "keys"),
        "model_store": store,
        "max_text_chars": 5_000,
        "max_batch_items": 8,
        "max_body_bytes": 50_000,
        "batch_max_wait_ms": 2,
        "listen_for_models": False,
        # Generous per-key limits: fuzzing and privacy runs send hundreds of requests a second from two keys.
        "rate_limit_per_s": 1_000.0,
        "rate_limit_burst": 1_000,
        **overrides,
    }
    return NerApiSettings.model_validate(values)


@dataclass
class FuzzReport:
    """What :func:`fuzz_api` saw: cases sent, answers per status code, and one line per failed check."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def summary(self) -> str:
        return f"cases={self.cases} failures={len(self.failures)} server_errors={self.server_errors}"


def fuzz_api(app: ASGIApp, examples: int, seed: int | None = None) -> FuzzReport:
    """Send ``examples`` schemathesis-generated requests (schema-valid and schema-violating, with a user key, an
    admin key, a wrong key or none) to every operation of the app's OpenAPI, in process over ASGI.

    Every answer is checked: no 5xx, a status code, content type, headers and body that the OpenAPI declares, and
    schema-violating input refused with a 4xx: 413 counts as a refusal too, since the OpenAPI declares the configured
    limits (``maxLength``, ``maxItems``) and the API answers 413 above them. Schema-valid input may still be refused
    with the documented 413 when its body is over ``max_body_bytes`` (a byte limit that JSON Schema cannot express),
    so schemathesis' "positive data acceptance" check is left out. Needs the development tools (``schemathesis``).
    """
    import schemathesis  # noqa: PLC0415 - a development tool, not a dependency of the service
    from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415
    from hypothesis import seed as fixed_seed  # noqa: PLC0415
    from hypothesis import strategies as st  # noqa: PLC0415
    from schemathesis.checks import positive_data_acceptance  # noqa: PLC0415
    from schemathesis.config import SchemathesisConfig  # noqa: PLC0415
    from schemathesis.core.failures import FailureGroup  # noqa: PLC0415
    from schemathesis.generation import GenerationMode  # noqa: PLC0415

    # schemathesis' default list of statuses that count as refusing schema-violating input, plus 413.
    rejections = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": rejections}}})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))
    credentials = st.sampled_from([USER_KEY, ADMIN_KEY, "not-a-key", None])
    report = FuzzReport()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # every case is sent once: failures are collected, not shrunk
    )
    @given(case=cases, key=credentials)
    def send(case: Any, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        response = case.call(headers=headers)
        report.cases += 1
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, headers=headers, excluded_checks=[positive_data_acceptance])
        except FailureGroup as group:  # every failed check is reported; the run goes on
            titles = "; ".join(str(getattr(f, "title", type(f).__name__)) for f in group.exceptions)
            report.failures.append(f"{case.operation.label} -> {response.status_code}: {titles}")

    (fixed_seed(seed)(send) if seed is not None else send)()
    return report


_HALF = Scores(precision=0.5, recall=0.5, f1=0.5, support=2)
PLACEHOLDER_RESULT = EvaluationResult(
    dataset="gold",
    documents=1,
    strict_micro=_HALF,
    strict_macro=_HALF,
    partial_micro=_HALF,
    strict_per_label={},
    partial_per_label={},
)
"""The metrics of a test's model announcement (the NER API passes them on, never judges them)."""
PLACEHOLDER_MANIFEST = DatasetManifest(
    version="d1", content_hash="0" * 64, document_count=1, annotators=[], label_counts={}
)
"""The dataset of a test's model announcement."""


def model_published(version: str, store: Path, label: str = "Condition") -> ModelPublished:
    """The trainer's announcement of ``version`` in ``store`` (metrics and manifest are placeholders)."""
    return ModelPublished(
        correlation_id="job-1",
        producer="trainer-test",
        model_version=version,
        artifact_uri=str(store / version),
        labels=[label],
        base_model="test",
        metrics=[PLACEHOLDER_RESULT],
        dataset=PLACEHOLDER_MANIFEST,
    )


async def wait_ready(client: httpx.AsyncClient, server: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Wait until the NER API process ``server`` answers ``/readyz`` with 200 (the benchmarks' servers): raise if it
    exits first or is not ready within ``timeout_s``."""
    import httpx  # noqa: PLC0415 - a test client's dependency, not the service's

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the NER API exited with {server.returncode} before it was ready")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the NER API was not ready in time")
