"""The errors the ingress and the admin API answer with instead of a result: one class per kind, mapped to HTTP in one table.

Code that refuses a request raises the kind that says why (`BadRequest`,
`NotFound`, `Conflict`, ...) with a message naming what was wrong and what was
expected; `http_status` is the only place that turns a kind into a status. The
ingress renders an `ApiError` as `{"code", "message"}` (with `x-restate-id` and
`Retry-After` when set), the admin API as `{"message", "restate_code"}`.
Domain errors that are not HTTP errors (the registry's, a query's) name their
kind (`RegistryError.kind`) and are translated where they reach the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final


class ApiError(Exception):
    """A request the ingress or the admin API answers itself; its class is its kind, `http_status` its status."""

    def __init__(
        self, message: str, invocation_id: str | None = None, *, retry_after_s: int | None = None, restate_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.invocation_id = invocation_id
        self.retry_after_s = retry_after_s
        self.restate_code = restate_code

    @property
    def status(self) -> int:
        return http_status(self)


class BadRequest(ApiError):
    """The request itself is wrong: its path, query, headers or body."""


class NotFound(ApiError):
    """What the request names (service, handler, deployment, invocation, ...) does not exist."""


class MethodNotAllowed(ApiError):
    """The path exists, but not for this HTTP method."""


class Conflict(ApiError):
    """The request conflicts with the current state (a second workflow run, a breaking registration, ...)."""


class Gone(ApiError):
    """What the request names existed but is no longer kept."""


class PayloadTooLarge(ApiError):
    """The body is larger than the configured limit."""


class UnsupportedMediaType(ApiError):
    """The body's content-type is not one the endpoint reads (the admin API reads only `application/json`)."""


class TooManyRequests(ApiError):
    """Too many requests wait at this node; retrying later is safe."""


class NotReady(ApiError):
    """The invocation exists but has no outcome yet (Restate's 470)."""


class Internal(ApiError):
    """Something unexpected failed here; the node's log has the details."""


class BadGateway(ApiError):
    """A deployment the request named answered with something unusable, or not at all (discovery at registration)."""


class Unavailable(ApiError):
    """The node cannot serve the request now (shutting down, the log refuses appends, ...); the message says whether a retry is safe."""


class InsufficientStorage(ApiError):
    """The node's disk is full: nothing was recorded; retrying once space is freed is safe."""


class GatewayTimeout(ApiError):
    """Work the request started did not finish within its configured timeout."""


HTTP_STATUS: Final[Mapping[type[ApiError], int]] = {
    BadRequest: 400,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    Gone: 410,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    TooManyRequests: 429,
    NotReady: 470,
    Internal: 500,
    BadGateway: 502,
    Unavailable: 503,
    GatewayTimeout: 504,
    InsufficientStorage: 507,
}
"""The one mapping from error kinds to HTTP statuses."""

_KIND_OF_STATUS: Final[Mapping[int, type[ApiError]]] = {status: kind for kind, status in HTTP_STATUS.items()}


def http_status(error: ApiError) -> int:
    """The HTTP status of an error: that of the nearest kind in its class hierarchy."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    raise AssertionError(f"{type(error).__name__} is not one of the kinds in HTTP_STATUS; derive it from one")


def kind_of_status(status: int) -> type[ApiError]:
    """The kind answering with `status` (for a reply that carries a status, such as a partition's answer); 500 if none does."""
    return _KIND_OF_STATUS.get(status, Internal)
