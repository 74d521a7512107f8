"""FastAPI application factory: REST API under /api and the server-rendered browser UI.

Every write goes through the capture services (CaptureService for clinical data, WorkflowService
for queries/SDV/lock/signatures, AccountService for users); the web layer only reads directly.
No response ever carries a stack trace: errors are mapped to JSON (API) or an error page (UI) and
unexpected ones are logged server-side with a reference shown to the user.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import secrets
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regenheart import __version__
from regenheart.capture.accounts import AccountService, UserView
from regenheart.capture.errors import CaptureError, PermissionDenied
from regenheart.capture.group_commit import GroupCommitter
from regenheart.capture.service import CaptureService, Scorer
from regenheart.capture.workflow import WorkflowService
from regenheart.protocol import load_protocol
from regenheart.protocol.models import Protocol
from regenheart.store.db import open_study_database
from regenheart.web import api, api_admin, form_values, pages, pages_admin, pages_daily, pages_review
from regenheart.web.contract import InputGuard, openapi_with_errors
from regenheart.web.pages import NEXT_STATE, STATUS_LABELS, error_page
from regenheart.web.requests import (
    CsrfFailed,
    Unauthenticated,
    WebContext,
    capture_error_response,
    client_address,
    ctx_of,
    error_body,
    set_session_cookie,
    utc_display,
)
from regenheart.web.security import SessionData, Signer, database_secret

log = logging.getLogger("regenheart.web")
WEB_DIR = Path(str(resources.files("regenheart.web")))
# Seconds a client should wait before retrying when the database did not answer (503 Retry-After).
DATABASE_RETRY_SECONDS = 5


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


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

    @app.exception_handler(OperationalError)
    async def _database_unavailable(request: Request, exc: OperationalError) -> Response:
        # The engine is down, restarting, or busy beyond its timeout: a condition to retry, not a server bug.
        # (Whether a save in flight was stored is then unknown: the client re-reads and sees its version.)
        reference = secrets.token_hex(6)
        log.error("database unavailable [%s] on %s %s: %s", reference, request.method, request.url.path,
                  str(exc).splitlines()[0][:300])
        message = (f"the database is unavailable (reference {reference}); nothing may have been saved: reload "
                   "to see what is stored, then retry")
        headers = {"Retry-After": str(DATABASE_RETRY_SECONDS)}
        if _is_api(request):
            return JSONResponse(error_body("database_unavailable", message), status_code=503, headers=headers)
        # A plain page: the site's layout itself reads the database (menu counts).
        return HTMLResponse(f"<!doctype html><html lang=en><meta charset=utf-8><title>Database unavailable</title>"
                            f"<h1>Database unavailable</h1><p>{html.escape(message.capitalize())}.</p>"
                            f'<p><a href="{html.escape(str(request.url.path))}">Try again</a></p></html>',
                            status_code=503, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        reference = secrets.token_hex(6)
        log.exception("unexpected error [%s] on %s %s", reference, request.method, request.url.path)
        message = f"internal error (reference {reference}); the details are in the server log"
        if _is_api(request):
            return JSONResponse(error_body("internal_error", message), status_code=500)
        return error_page(request, 500, message)


# ---------------------------------------------------------------------------------------------- middleware
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'")


class SecurityHeaders:
    """No caching of clinical data, no framing, scripts and styles only from this server.

    A plain ASGI middleware (it edits the response head as it passes): Starlette's BaseHTTPMiddleware runs
    each request through an extra task and memory streams, a measurable share of an API request's time.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add_headers(scope, MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _add_headers(scope: Scope, headers: MutableHeaders) -> None:
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Content-Security-Policy", _CSP)
        if not scope["path"].startswith("/static"):
            headers.setdefault("Cache-Control", "no-store")
        if scope.get("scheme") == "https":
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        state = scope.get("state") or {}
        session: SessionData | None = state.get("session")
        if session is not None and state.get("refresh_session", True):
            # sliding idle timeout: re-sign the session cookie on every authenticated page
            request = Request(scope)
            signer: Signer = request.app.state.ctx.signer
            cookie = Response()
            set_session_cookie(request, cookie, signer.dump_session(session), signer.idle_timeout)
            headers.append("set-cookie", cookie.headers["set-cookie"])


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
    templates.env.globals.update(status_labels=STATUS_LABELS, next_state=NEXT_STATE)
    templates.env.filters["utc"] = utc_display
    templates.env.filters["item_value"] = lambda value: form_values.shown(protocol, value)  # coded value as text

    app = FastAPI(title="RegenHeart EDC", version=__version__,
                  description="Electronic data capture of the RegenHeart trial (NCT04325594): subjects, "
                              "visit forms with edit checks, adverse events, queries, source-data "
                              "verification, lock and electronic signatures, with a hash-chained audit trail.",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.ctx = WebContext(engine, protocol, capture, workflow, accounts, signer, templates, today,
                               GroupCommitter(capture))
    app.add_middleware(InputGuard)  # inside SecurityHeaders: its refusals get the same headers
    app.add_middleware(SecurityHeaders)
    app.openapi = lambda: openapi_with_errors(app)  # type: ignore[method-assign]
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")

    app.include_router(api.router)
    app.include_router(api_admin.router)
    pages_review.install(app)  # before pages: bulk review, AE review, and its /forms/ae/AE<n> route wins
    app.include_router(pages.router)
    pages_admin.install(app)  # /admin/sites, subject-code correction
    pages_daily.install(app)  # dashboard, data quality, queries worklist, export; menu query count
    _install_error_handlers(app)
    return app


def app_from_environment() -> FastAPI:
    """Application factory of one worker process of ``regenheart serve --workers N``.

    Reads the database (``REGENHEART_DB``) and, when set, the protocol file (``REGENHEART_PROTOCOL``).
    """
    import os

    protocol_file = os.environ.get("REGENHEART_PROTOCOL")
    return create_app(os.environ["REGENHEART_DB"], load_protocol(protocol_file) if protocol_file else None)
