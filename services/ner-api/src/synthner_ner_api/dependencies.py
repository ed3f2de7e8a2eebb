"""What the routes depend on: the app's state, the caller (from an API key or the authenticating proxy) and the
request id."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Address, Headers

from synthner_ner_api.auth import Principal
from synthner_ner_api.errors import ApiError
from synthner_ner_api.settings import NerApiSettings
from synthner_ner_api.state import ApiState, api_state

State = Annotated[ApiState, Depends(api_state)]

# The two ways to send a key, as OpenAPI security schemes (either one will do). They only read the headers: the
# checks, and the 401s, are in `identify`, which the gate runs before the body is read.
BEARER = HTTPBearer(
    scheme_name="BearerKey", auto_error=False, description="An API key as `Authorization: Bearer <key>`."
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKeyHeader", auto_error=False, description="An API key as `X-API-Key: <key>`."
)


def bearer_or_api_key(headers: Headers) -> str:
    """The key a request carries (``Authorization: Bearer <key>``, else ``X-API-Key``), or ""."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key", "").strip()


def from_trusted_proxy(settings: NerApiSettings, client: Address | None) -> bool:
    """Whether the request's peer (the TCP peer: forwarded-for headers are not applied) is a configured proxy."""
    if client is None:
        return False
    try:
        address = ip_address(client.host)
    except ValueError:
        return False
    return any(address in network for network in settings.trusted_proxy_cidrs)


def identify(state: ApiState, headers: Headers, client: Address | None) -> Principal:
    """The caller, from the headers alone (the body is never needed): an API key, or the authenticating proxy's
    header when the request comes from a trusted proxy address (per ``auth_mode``). 401 otherwise."""
    settings = state.settings
    if settings.auth_mode == "trusted_proxy":
        if not from_trusted_proxy(settings, client):
            raise ApiError(401, "requests must come through the authenticating proxy")
        user = headers.get(settings.proxy_user_header)
        if not user:
            raise ApiError(401, f"missing {settings.proxy_user_header} from the authenticating proxy")
        return Principal(user[:100], "admin")
    api_keys = state.api_keys
    assert api_keys is not None, "api_keys mode without keys is refused by the settings"
    key = bearer_or_api_key(headers)
    if not key:
        raise ApiError(401, "an API key is required (Authorization: Bearer <key> or X-API-Key)")
    principal = api_keys.authenticate(key)
    if principal is None:
        raise ApiError(401, "invalid API key")
    return principal


def authenticated(
    request: Request,
    state: State,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)],
) -> Principal:
    """The caller the gate identified before the body was read (:class:`~synthner_ner_api.middleware.Gate`); the
    security parameters put the key schemes into the OpenAPI document."""
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    return identify(state, request.headers, request.client)


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
