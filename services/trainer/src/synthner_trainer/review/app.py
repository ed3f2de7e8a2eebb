"""The review service: the clinician's page and its JSON API over a :class:`ReviewStore`.

Same auth model as the NER API (API keys from a hashed key file, :mod:`synthner_shared.auth`; ``Bearer`` or
``X-API-Key``); the key's name is the reviewer id written with every review. The page is one HTML file with inline CSS
and JavaScript; the Content-Security-Policy forbids every other origin, so it loads nothing from outside. Note text
and spans never reach a log line or an error message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from synthner_shared.auth import ApiKeys, Principal
from synthner_shared.documents import DocumentEntity
from synthner_trainer.review.store import ReviewStore, UnknownNoteError, resolve_version
from synthner_trainer.store import UnknownDatasetVersionError

PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self';"
    " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class ReviewSettings(BaseSettings):
    """The review service's settings (``SYNTHNER_REVIEW_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="SYNTHNER_REVIEW_", extra="ignore")

    data_dir: Path = Field(description="The trainer's data folder: its store.sqlite3 holds the queue and the reviews.")
    api_keys_file: Path = Field(description="Hashed API keys, 'name:user|admin:sha256hex' lines; name = reviewer id.")
    labels: list[str] | None = Field(default=None, description="Labels a reviewer may give; default: the dataset's.")

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.sqlite3"


class ReviewError(Exception):
    """A client error: status code and a one-line message without note text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EntityIn(BaseModel):
    start: int = Field(ge=0, description="Code-point offset of the mention's first character.")
    end: int = Field(ge=1, description="Code-point offset one past its last character.")
    label: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class ReviewIn(BaseModel):
    entities: list[EntityIn] = Field(max_length=10_000, description="The reviewed spans, sorted, non-overlapping.")


BEARER = HTTPBearer(scheme_name="BearerKey", auto_error=False)
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", scheme_name="ApiKeyHeader", auto_error=False)


def reviewer(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)],
) -> Principal:
    """The reviewer, from an API key checked against the app's key file (its name is the reviewer id)."""
    key = bearer.credentials.strip() if bearer is not None else (x_api_key or "").strip()
    if not key:
        raise ReviewError(401, "an API key is required (Authorization: Bearer <key> or X-API-Key)")
    keys: ApiKeys = request.app.state.api_keys
    principal = keys.authenticate(key)
    if principal is None:
        raise ReviewError(401, "invalid API key")
    return principal


Reviewer = Annotated[Principal, Depends(reviewer)]


def create_app(settings: ReviewSettings, store: ReviewStore | None = None) -> FastAPI:
    """The review app over ``store`` (default: the store in ``settings.data_dir``, closed with the app)."""
    keys = ApiKeys(settings.api_keys_file)
    reviews = store if store is not None else ReviewStore.open(settings.store_path)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if store is None:  # a store passed in belongs to the caller
                reviews.close()

    app = FastAPI(title="synthner review", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.api_keys = keys

    @app.exception_handler(ReviewError)
    async def client_error(_: Request, exc: ReviewError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        html = files("synthner_trainer.review").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"})

    @app.get("/livez", include_in_schema=False)
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/queue")
    def queue(_: Reviewer, version: str | None = None) -> dict[str, Any]:
        """The review queue of a dataset version (default: the newest with a queue) and the labels to offer."""
        try:
            name = resolve_version(reviews, version)
            items = reviews.queue(name)
        except UnknownDatasetVersionError as exc:
            raise ReviewError(404, str(exc.args[0])) from None
        labels = settings.labels or sorted(reviews.dataset.manifest(name).label_counts)
        return {
            "version": name,
            "labels": labels,
            "items": [{"note_id": i.note_id, "reason": i.reason, "reviews": i.reviews} for i in items],
        }

    @app.get("/v1/notes/{note_id}")
    def note(note_id: str, _: Reviewer) -> dict[str, Any]:
        """A note with the spans trained on, every annotator's spans (with prompt version) and its reviews."""
        try:
            found = reviews.note(note_id)
        except UnknownNoteError as exc:
            raise ReviewError(404, str(exc)) from None
        return {
            "note_id": found.note_id,
            "text": found.text,
            "language": found.language,
            "entities": found.entities,
            "annotations": [
                {
                    "annotator": a.annotator,
                    "prompt": a.prompt,
                    "spans": [{"start": s.start, "end": s.end, "label": s.label, "score": s.score} for s in a.spans],
                }
                for a in found.annotations
            ],
            "reviews": [vars(r) for r in found.reviews],
        }

    @app.put("/v1/notes/{note_id}/review")
    def save(note_id: str, body: ReviewIn, who: Reviewer) -> dict[str, Any]:
        """Save a review (provenance human, the key's name as reviewer, now as time); the machine's spans stay."""
        if settings.labels is not None and {e.label for e in body.entities} - set(settings.labels):
            raise ReviewError(422, "a span uses a label outside the review's label set")
        entities = [DocumentEntity(start=e.start, end=e.end, label=e.label) for e in body.entities]
        try:
            review = reviews.save_review(note_id, who.name, entities)
        except UnknownNoteError as exc:
            raise ReviewError(404, str(exc)) from None
        except ValueError as exc:
            raise ReviewError(422, str(exc)) from None
        return {**vars(review), "provenance": "human"}

    return app
