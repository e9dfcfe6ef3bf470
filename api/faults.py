"""API errors and the <fault> bodies oVirt clients expect for every failure."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered as a fault: HTTP status, reason and detail."""

    def __init__(self, status: int, reason: str, detail: str = "", *, field: str | None = None):
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail
        self.field = field


def bad_request(detail: str, field: str | None = None) -> ApiError:
    return ApiError(400, "Bad Request", detail, field=field)


def not_found(detail: str = "Resource not found.") -> ApiError:
    return ApiError(404, "Not Found", detail)


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "Forbidden", detail)


def unauthorized(detail: str = "Authentication required.") -> ApiError:
    return ApiError(401, "Unauthorized", detail)


def from_domain(err: Any) -> ApiError:
    """Maps a DomainError (409), InvalidInput (400) or NotFound (404) to a fault."""
    status = getattr(err, "status", 409)
    message = getattr(err, "message", str(err))
    field = getattr(err, "field", None)
    if status == 404:
        return ApiError(404, "Not Found", message, field=field)
    if status == 400:
        return ApiError(400, "Operation Failed", f"[{message}]", field=field)
    return ApiError(status, "Operation Failed", f"[{message}]", field=field)


def fault_tree(err: ApiError) -> dict[str, Any]:
    out: dict[str, Any] = {"reason": err.reason, "detail": err.detail}
    return out
