"""Request helpers shared by the REST API, the browser pages and the application factory.

The web context of a request, who is asking (bearer token or session cookie), the client's
address, the session cookie, and how a refused capture request becomes an HTTP status and body.
Below :mod:`web.api`, :mod:`web.pages` and :mod:`web.app`, so none of them imports another.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from regenheart.capture.accounts import AccountLocked, AccountService, AuthenticationFailed, UserView
from regenheart.capture.errors import (
    CaptureError,
    Conflict,
    NotFound,
    PermissionDenied,
    StateError,
    ValidationFailed,
)
from regenheart.capture.group_commit import GroupCommitter
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.capture.workflow import WorkflowService
from regenheart.protocol.models import Protocol
from regenheart.web.security import SESSION_COOKIE, SessionData, Signer


class Unauthenticated(Exception):
    """No valid token or session (401 for the API, redirect to the log-in page for the UI)."""

    def __init__(self, message: str = "authentication required"):
        super().__init__(message)


class CsrfFailed(Exception):
    """A form POST without the session's CSRF token."""


@dataclass
class WebContext:
    engine: Any
    protocol: Protocol
    capture: CaptureService
    workflow: WorkflowService
    accounts: AccountService
    signer: Signer
    templates: Jinja2Templates
    today: Callable[[], dt.date]
    # Form saves of the API share durable transactions (one writer thread per process): see capture.group_commit.
    group_commit: GroupCommitter | None = None


def utc_display(stamp: str | None) -> str:
    """'2026-01-05T10:11:12.123456Z' -> '2026-01-05 10:11:12 UTC' (the full value stays in the data)."""
    if not stamp:
        return ""
    return f"{stamp[:10]} {stamp[11:19]} UTC" if len(stamp) >= 19 and stamp[10] == "T" else stamp


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def ctx_of(request: Request) -> WebContext:
    return request.app.state.ctx


# ---------------------------------------------------------------------------------------------- auth
async def api_user(request: Request) -> UserView:
    """Dependency: the account behind the request's bearer token (401 when absent, bad or revoked).

    Runs on the event loop, not in a worker thread (a thread hand-over per request costs more than the check):
    the signature check and one indexed read that waits for no lock (``AccountService.token_user``). The
    access-log write of a refused token may wait for the writer, so it goes to a worker thread.
    """
    ctx = ctx_of(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token: POST /api/auth/token first")
    data = ctx.signer.read_token(token.strip())
    user = ctx.accounts.token_user(*data, kept=True) if data else None  # this thread: the event loop's
    if user is None:
        await run_in_threadpool(ctx.accounts.log_access, data[0] if data else "(unknown)", None, "invalid_token",
                                "api", client_address(request), f"{request.method} {request.url.path}")
        raise Unauthenticated("invalid, expired or revoked token")
    request.state.user = user
    return user


async def api_actor(user: UserView = Depends(api_user)) -> Actor:
    """Dependency: the role and site of the account behind the bearer token (see :func:`api_user`)."""
    return user.actor


def page_session(request: Request) -> tuple[UserView, SessionData]:
    ctx = ctx_of(request)
    session = ctx.signer.read_session(request.cookies.get(SESSION_COOKIE))
    user = ctx.accounts.token_user(session.username, session.token_version) if session else None
    if session is None or user is None:
        raise Unauthenticated("please log in")
    request.state.user = user
    request.state.session = session
    return user, session


# ---------------------------------------------------------------------------------------------- errors
def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": message, **extra}


def capture_error_response(exc: CaptureError) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body of a refused request."""
    if isinstance(exc, ValidationFailed):
        return 422, error_body("validation_failed", f"{len(exc.violations)} problem(s) in the submitted data",
                               violations=[v.as_dict() for v in exc.violations])
    if isinstance(exc, AccountLocked):
        return 401, error_body("account_locked", str(exc))
    if isinstance(exc, AuthenticationFailed):
        return 401, error_body("authentication_failed", str(exc))
    if isinstance(exc, PermissionDenied):
        return 403, error_body("forbidden", str(exc))
    if isinstance(exc, NotFound):
        return 404, error_body("not_found", str(exc))
    if isinstance(exc, Conflict):
        return 409, error_body("version_conflict", str(exc))
    if isinstance(exc, StateError):
        return 409, error_body("invalid_state", str(exc))
    return 400, error_body("refused", str(exc))


def set_session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
