"""What the routes depend on: the app's state, the caller (from an API key or the authenticating proxy) and the
request id."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from synthner_ner_api.auth import Principal
from synthner_ner_api.errors import ApiError
from synthner_ner_api.state import ApiState, api_state

State = Annotated[ApiState, Depends(api_state)]

# The two ways to send a key, as OpenAPI security schemes (either one will do). They only read the headers: the
# checks, and the 401s, are in `authenticated`.
BEARER = HTTPBearer(
    scheme_name="BearerKey", auto_error=False, description="An API key as `Authorization: Bearer <key>`."
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKeyHeader", auto_error=False, description="An API key as `X-API-Key: <key>`."
)


def authenticated(
    request: Request,
    state: State,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)],
) -> Principal:
    """The caller, from an API key or from the authenticating proxy's header (per ``auth_mode``)."""
    settings = state.settings
    if settings.auth_mode == "trusted_proxy":
        user = request.headers.get(settings.proxy_user_header)
        if not user:
            raise ApiError(401, f"missing {settings.proxy_user_header} from the authenticating proxy")
        return Principal(user[:100], "admin")
    api_keys = state.api_keys
    assert api_keys is not None, "api_keys mode without keys is refused by the settings"
    key = bearer.credentials.strip() if bearer is not None else (x_api_key or "").strip()
    if not key:
        raise ApiError(401, "an API key is required (Authorization: Bearer <key> or X-API-Key)")
    principal = api_keys.authenticate(key)
    if principal is None:
        raise ApiError(401, "invalid API key")
    return principal


def admin(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    if principal.scope != "admin":
        raise ApiError(403, "this endpoint needs an admin key")
    return principal


User = Annotated[Principal, Depends(authenticated)]
Admin = Annotated[Principal, Depends(admin)]


def request_id(request: Request) -> str:
    """The id the request context middleware gave the request (the caller's ``X-Request-ID`` when well-formed)."""
    value: str = request.state.request_id
    return value


RequestId = Annotated[str, Depends(request_id)]
