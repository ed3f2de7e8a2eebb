"""The OpenAPI document of one deployment: its configured size limits and, behind a proxy, the proxy's scheme.

The limits are settings of each deployment, enforced in the handlers with 413 (not pydantic's 422), so they are
written into the generated document rather than into the static pydantic models.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from synthner_ner_api.settings import NerApiSettings

PROXY_SCHEME = "AuthenticatingProxy"


def declare_limits_and_auth(schema: dict[str, Any], settings: NerApiSettings) -> None:
    """Put the configured limits (413 above them) and, behind a proxy, the proxy's scheme into ``schema``."""
    components = schema.setdefault("components", {})
    models = components.get("schemas", {})
    for model in ("NerRequest", "BatchItemIn"):
        models[model]["properties"]["text"]["maxLength"] = settings.max_text_chars
    models["NerBatchRequest"]["properties"]["items"]["maxItems"] = settings.max_batch_items
    schema["info"]["description"] += (
        f"\n\nLimits (413 above them): a text of at most {settings.max_text_chars} characters, at most "
        f"{settings.max_batch_items} items per batch, a request body of at most {settings.max_body_bytes} bytes."
    )
    if settings.auth_mode != "trusted_proxy":
        return
    header = settings.proxy_user_header
    components["securitySchemes"] = {
        PROXY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": header,
            "description": "Set by the authenticating proxy in front of the API; clients authenticate to the proxy.",
        }
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "security" in operation:
                operation["security"] = [{PROXY_SCHEME: []}]


def use_deployment_openapi(app: FastAPI, settings: NerApiSettings) -> None:
    """Make ``app`` serve FastAPI's generated document with :func:`declare_limits_and_auth` applied (once, cached)."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_limits_and_auth(default_openapi(), settings)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
