"""Typed errors of the store contract (contract.md §1.13).

Every failure a store raises is a `StoreError`. Messages follow lash's templates so that logs read the same
whichever backend produced them.
"""

from __future__ import annotations

__all__ = [
    "SCHEMA_VERSION",
    "BackendError",
    "BackendUnavailable",
    "HeadRevisionConflict",
    "InvalidRequest",
    "QueuedWorkClaimExpired",
    "RuntimeTurnCommitConflict",
    "SessionBindingMismatch",
    "SessionExecutionLeaseExpired",
    "StoreError",
    "UnsupportedReadScope",
    "UnsupportedRecordSchemaVersion",
    "ensure_supported_schema_version",
]

SCHEMA_VERSION = 1


class StoreError(Exception):
    """Base of every error a sessionfence store raises."""


class SessionBindingMismatch(StoreError):
    def __init__(self, bound_session_id: str, attempted_session_id: str) -> None:
        self.bound_session_id = bound_session_id
        self.attempted_session_id = attempted_session_id
        super().__init__(
            f"store is already bound to session `{bound_session_id}` "
            f"and cannot be reused for `{attempted_session_id}`"
        )


class UnsupportedReadScope(StoreError):
    def __init__(self, scope: object) -> None:
        self.scope = scope
        super().__init__(f"store does not support read scope {scope!r}")


class HeadRevisionConflict(StoreError):
    def __init__(self, expected: int | None, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"store head revision conflict: expected {expected}, actual {actual}")


class RuntimeTurnCommitConflict(StoreError):
    def __init__(self, session_id: str, turn_id: str) -> None:
        self.session_id = session_id
        self.turn_id = turn_id
        super().__init__(
            f"runtime turn `{turn_id}` for session `{session_id}` was already committed "
            "with a different commit hash"
        )


class QueuedWorkClaimExpired(StoreError):
    def __init__(self, session_id: str, claim_id: str) -> None:
        self.session_id = session_id
        self.claim_id = claim_id
        super().__init__(f"queued work claim `{claim_id}` for session `{session_id}` is missing or expired")


class SessionExecutionLeaseExpired(StoreError):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"session execution lease for session `{session_id}` is missing or expired")


class UnsupportedRecordSchemaVersion(StoreError):
    def __init__(self, record_kind: str, actual: int, expected: int) -> None:
        self.record_kind = record_kind
        self.actual = actual
        self.expected = expected
        super().__init__(
            f"{record_kind} schema_version {actual} is not supported by this binary (expected {expected})"
        )


class BackendError(StoreError):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"store backend error: {message}")


class BackendUnavailable(BackendError):
    """Redis could not be reached or the connection dropped: the outcome of a write is unknown.

    Retrying is safe for stamped commits (replay by turn id and hash) and for every read.
    """


class InvalidRequest(StoreError, ValueError):
    """An argument was refused before any I/O; nothing was written."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def ensure_supported_schema_version(record_kind: str, actual: int, expected: int = SCHEMA_VERSION) -> None:
    """lash's check: anything but an exact match is refused."""
    if actual != expected:
        raise UnsupportedRecordSchemaVersion(record_kind, actual, expected)
