"""What can go wrong talking to the API, as exceptions the controller turns into conditions."""

from __future__ import annotations

__all__ = ["ApiError", "CacheNotSyncedError", "ConflictError", "NotFoundError", "NotScalableError"]


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: ``status`` 0)."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFoundError(ApiError):
    """The object (or its kind) does not exist: 404."""


class ConflictError(ApiError):
    """The object changed since it was read (stale resourceVersion): 409."""


class CacheNotSyncedError(ApiError):
    """A watched cache cannot be trusted now (not listed yet, or its watch failed and it lists again): whoever
    reads it must not act on what it would return."""


class NotScalableError(Exception):
    """The kind exists but serves no /scale subresource, so the operator cannot scale it."""
