"""FastAPI application factory: REST API under /api and the server-rendered browser UI.

Every write goes through the capture services (CaptureService for clinical data, WorkflowService
for queries/SDV/lock/signatures, AccountService for users); the web layer only reads directly.
No response ever carries a stack trace: errors are mapped to JSON (API) or an error page (UI) and
unexpected ones are logged server-side with a reference shown to the user.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from regenheart import __version__
from regenheart.capture.accounts import AccountLocked, AccountService, AuthenticationFailed, UserView
from regenheart.capture.errors import (
    CaptureError,
    Conflict,
    NotFound,
    PermissionDenied,
    StateError,
    ValidationFailed,
)
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService, Scorer
from regenheart.capture.workflow import WorkflowService
from regenheart.protocol import load_protocol
from regenheart.protocol.models import Protocol
from regenheart.store.db import open_study_database
from regenheart.web.security import SESSION_COOKIE, SessionData, Signer, database_secret

log = logging.getLogger("regenheart.web")
WEB_DIR = Path(str(resources.files("regenheart.web")))


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


def utc_display(stamp: str | None) -> str:
    """'2026-01-05T10:11:12.123456Z' -> '2026-01-05 10:11:12 UTC' (the full value stays in the data)."""
    if not stamp:
        return ""
    return f"{stamp[:10]} {stamp[11:19]} UTC" if len(stamp) >= 19 and stamp[10] == "T" else stamp


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def ctx_of(request: Request) -> WebContext:
    return request.app.state.ctx


# ---------------------------------------------------------------------------------------------- auth
def api_user(request: Request) -> UserView:
    """Dependency: the account behind the request's bearer token (401 when absent, bad or revoked)."""
    ctx = ctx_of(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token: POST /api/auth/token first")
    data = ctx.signer.read_token(token.strip())
    user = ctx.accounts.get_user(data[0]) if data else None
    if data is None or user is None or not user.active or user.token_version != data[1]:
        ctx.accounts.log_access(data[0] if data else "(unknown)", None, "invalid_token", "api",
                                client_address(request), f"{request.method} {request.url.path}")
        raise Unauthenticated("invalid, expired or revoked token")
    request.state.user = user
    return user


def api_actor(request: Request) -> Actor:
    return api_user(request).actor


def page_session(request: Request) -> tuple[UserView, SessionData]:
    ctx = ctx_of(request)
    session = ctx.signer.read_session(request.cookies.get(SESSION_COOKIE))
    user = ctx.accounts.get_user(session.username) if session else None
    if session is None or user is None or not user.active or user.token_version != session.token_version:
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


def log_refusal(request: Request, exc: Exception) -> None:
    """Permission refusals go to the access log (who, what was attempted, why refused)."""
    user: UserView | None = getattr(request.state, "user", None)
    channel = "api" if request.url.path.startswith("/api") else "web"
    try:
        ctx_of(request).accounts.log_access(user.username if user else "(anonymous)", user.role if user else None,
                                            "permission_denied", channel, client_address(request),
                                            f"{request.method} {request.url.path}: {exc}")
    except Exception:  # never let logging hide the refusal itself
        log.exception("could not write the access log")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api")


def _install_error_handlers(app: FastAPI) -> None:
    from regenheart.web.pages import error_page  # late import: pages imports this module

    @app.exception_handler(CaptureError)
    async def _capture_error(request: Request, exc: CaptureError) -> Response:
        if isinstance(exc, PermissionDenied):
            log_refusal(request, exc)
        status, body = capture_error_response(exc)
        if _is_api(request):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse(body, status_code=status, headers=headers)
        return error_page(request, status, body["detail"])

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, exc: Unauthenticated) -> Response:
        if _is_api(request):
            return JSONResponse(error_body("unauthenticated", str(exc)), status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        from urllib.parse import quote
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        log_refusal(request, PermissionDenied("missing or wrong CSRF token"))
        return error_page(request, 403, "The form has expired or was not sent by this application (CSRF check). "
                                        "Go back, reload the page and try again.")

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> Response:
        violations = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            value = err.get("input")
            violations.append({"field": ".".join(loc) or "(body)",
                               "value": value if isinstance(value, (str, int, float, bool, type(None))) else None,
                               "rule": err.get("type", "invalid"), "message": err.get("msg", "is invalid")})
        if _is_api(request):
            return JSONResponse(error_body("validation_failed", "the request is malformed", violations=violations),
                                status_code=422)
        return error_page(request, 422, "The request is malformed.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {404: "not found", 405: "method not allowed"}
        message = messages.get(exc.status_code, str(exc.detail) if exc.detail else "error")
        if _is_api(request):
            return JSONResponse(error_body("not_found" if exc.status_code == 404 else "http_error", message),
                                status_code=exc.status_code)
        return error_page(request, exc.status_code, message.capitalize() + ".")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        reference = secrets.token_hex(6)
        log.exception("unexpected error [%s] on %s %s", reference, request.method, request.url.path)
        message = f"internal error (reference {reference}); the details are in the server log"
        if _is_api(request):
            return JSONResponse(error_body("internal_error", message), status_code=500)
        return error_page(request, 500, message)


# ---------------------------------------------------------------------------------------------- middleware
class SecurityHeaders(BaseHTTPMiddleware):
    """No caching of clinical data, no framing, scripts and styles only from this server."""

    async def dispatch(self, request: Request, call_next):
        response = await call_next(request)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Content-Security-Policy",
                           "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                           "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        if not request.url.path.startswith("/static"):
            headers.setdefault("Cache-Control", "no-store")
        if request.url.scheme == "https":
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        session: SessionData | None = getattr(request.state, "session", None)
        if session is not None and getattr(request.state, "refresh_session", True):
            # sliding idle timeout: re-sign the session cookie on every authenticated page
            signer: Signer = request.app.state.ctx.signer
            set_session_cookie(request, response, signer.dump_session(session), signer.idle_timeout)
        return response


def set_session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")


# ---------------------------------------------------------------------------------------------- factory
def create_app(db_path_or_url: str | Path, protocol: Protocol | None = None, *,
               scorer: Scorer | None = None, today: Callable[[], dt.date] | None = None,
               hasher: PasswordHasher | None = None, token_ttl: int | None = None,
               idle_timeout: int | None = None) -> FastAPI:
    """The EDC application on an existing, migrated study database.

    ``protocol`` defaults to the embedded RegenHeart definition; ``scorer``, ``today`` and
    ``hasher`` are for tests (fixed dates, cheap password hashing).
    """
    engine = open_study_database(db_path_or_url)
    protocol = protocol or load_protocol()
    today = today or _utc_today
    accounts = AccountService(engine, protocol, hasher=hasher)
    capture = CaptureService(engine, protocol, scorer=scorer, today=today)
    workflow = WorkflowService(engine, protocol, accounts)
    signer_kw = {k: v for k, v in {"token_ttl": token_ttl, "idle_timeout": idle_timeout}.items() if v}
    signer = Signer(database_secret(engine), **signer_kw)
    templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
    from regenheart.web.pages import NEXT_STATE, STATUS_LABELS

    templates.env.globals.update(status_labels=STATUS_LABELS, next_state=NEXT_STATE)
    templates.env.filters["utc"] = utc_display

    app = FastAPI(title="RegenHeart EDC", version=__version__,
                  description="Electronic data capture of the RegenHeart trial (NCT04325594): subjects, "
                              "visit forms with edit checks, adverse events, queries, source-data "
                              "verification, lock and electronic signatures, with a hash-chained audit trail.",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.ctx = WebContext(engine, protocol, capture, workflow, accounts, signer, templates, today)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")

    from regenheart.web import api, pages

    app.include_router(api.router)
    app.include_router(pages.router)
    _install_error_handlers(app)
    return app
