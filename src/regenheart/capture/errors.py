"""Errors of the capture service. Each carries a message fit to show a user (never a stack trace)."""

from __future__ import annotations

from regenheart.capture.validation import Violation


class CaptureError(Exception):
    """Base class: the request was refused and nothing was written."""


class ValidationFailed(CaptureError):
    """The input breaks one or more rules; ``violations`` lists every one (field, value, rule)."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("; ".join(str(v) for v in violations))

    def __reduce__(self) -> tuple:
        # Rebuilt from its violations (the default would pass the message text as the violations), so that
        # a refusal raised in a child process (regenheart.forked) reaches the parent intact.
        return (type(self), (self.violations,))


class NotFound(CaptureError):
    """The subject, visit, form or record does not exist (or is not visible to this user)."""


class PermissionDenied(CaptureError):
    """The user's role or site does not allow this action."""


class Conflict(CaptureError):
    """The record changed since the client read it (stale version); nothing was overwritten."""


class StateError(CaptureError):
    """The action is not allowed in the record's current state (locked, not enrolled, ...)."""
