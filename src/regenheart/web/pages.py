"""Server-rendered browser UI (Jinja2). Every POST carries the session's CSRF token.

The pages call the same services as the API; validation errors are shown inline next to the
fields they concern, with the value entered and the rule broken.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from regenheart.capture.accounts import AuthenticationFailed, UserView
from regenheart.capture.errors import (
    Conflict,
    NotFound,
    StateError,
    ValidationFailed,
)
from regenheart.capture.permissions import PERMISSIONS, ROLES, Actor
from regenheart.capture.sites import SiteService
from regenheart.capture.validation import Violation, run_checks
from regenheart.capture.workflow import SIGNATURE_MEANINGS
from regenheart.protocol.missing import plain, plain_value
from regenheart.protocol.models import FieldDef, Protocol
from regenheart.store.audit import canonical
from regenheart.web import audit_trail, form_values, views
from regenheart.web.requests import (
    CsrfFailed,
    client_address,
    ctx_of,
    page_session,
    set_session_cookie,
    utc_display,
)
from regenheart.web.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE, SessionData, same_token

router = APIRouter(include_in_schema=False)
FLASH_COOKIE = "rh_flash"
STATUS_LABELS = {
    "screening": "screening", "eligible": "eligible", "screen_failed": "screen failed", "enrolled": "enrolled",
    "infused": "infused (on study)", "completed": "completed", "discontinued": "discontinued",
}
NEXT_STATE = {"upcoming": "upcoming", "due": "due now", "overdue": "overdue", "pending": "date pending",
              "action": "to do"}
Auth = tuple[UserView, SessionData]


# ---------------------------------------------------------------------------------------------- helpers
def _flash_read(request: Request) -> list[tuple[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    data = ctx_of(request).signer.read_flash(raw)
    return [(str(a), str(b)) for a, b in data] if isinstance(data, list) else []


def _flash(request: Request, response: Response, messages: list[tuple[str, str]]) -> Response:
    if messages:
        response.set_cookie(FLASH_COOKIE, ctx_of(request).signer.dump_flash(messages), max_age=60, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


def redirect(request: Request, url: str, messages: list[tuple[str, str]] | None = None) -> Response:
    return _flash(request, RedirectResponse(url, status_code=303), messages or [])


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    ctx = ctx_of(request)
    user: UserView | None = getattr(request.state, "user", None)
    session: SessionData | None = getattr(request.state, "session", None)
    flashes = _flash_read(request) + context.pop("messages", [])
    response = ctx.templates.TemplateResponse(request, template, {
        "user": user, "csrf": session.csrf if session else "", "protocol": ctx.protocol, "messages": flashes,
        "may": (lambda action: bool(user and user.actor.may(action))), "status_labels": STATUS_LABELS,
        "next_state": NEXT_STATE, "study": ctx.protocol.study, "today": ctx.today().isoformat(), **context,
    }, status_code=status)
    if flashes:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {401: "Not logged in", 403: "Not allowed", 404: "Not found", 409: "Not possible now",
              422: "Invalid request", 500: "Something went wrong"}
    return render(request, "error.html", status, title=titles.get(status, "Error"), message=message,
                  status_code=status)


async def posted_form(request: Request, session: SessionData | None) -> dict[str, str]:
    """The POSTed form fields (text only); checks the CSRF token against the session's."""
    form = await request.form()
    data = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if session is not None and not same_token(session.csrf, data.get("csrf_token")):
        raise CsrfFailed()
    return data


def safe_return(target: str | None, default: str) -> str:
    """Only same-site relative paths are followed after a POST (no open redirects)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def _violations_by_field(violations: list[Violation]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in violations:
        shown = "" if v.value in (None, "") or v.rule in ("required", "reason_required") else f" (entered: {v.value})"
        out.setdefault(v.field, []).append(f"{v.message}{shown}")
    return out


def _fmt_value(field: FieldDef | None, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and field is not None and field.decimals in (0, None):
        return str(int(value))
    return str(value)


def field_widgets(protocol: Protocol, fields: list[FieldDef], values: dict[str, Any],
                  errors: dict[str, list[str]] | None = None, warnings: dict[str, list[str]] | None = None,
                  queries: dict[str, int] | None = None, raw: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """What the templates need to draw each protocol field: widget, options, hint, value, messages."""
    out = []
    for f in fields:
        options: list[tuple[str, str]] = []
        if f.type == "code":
            codes = protocol.allowed_codes(f)
            if f.codelist:
                options = [(str(c), f"{protocol.decode(f.codelist, c)}") for c in codes]
            else:
                labels = f.labels or [str(c) for c in codes]
                options = [(str(c), str(label)) for c, label in zip(codes, labels, strict=True)]
        widget = {"integer": "number", "float": "number", "date": "date", "text": "text"}.get(f.type, "select")
        if f.type == "code" and f.codes is not None:
            widget = "scale"  # questionnaire-style items: one compact row of radio buttons, keyboard-friendly
        elif f.type == "code" and len(options) <= 4:
            widget = "radio"
        if f.type == "text" and (f.max_length or 0) > 200:
            widget = "textarea"
        hint = []
        if f.range is not None:
            lo, hi = (str(int(x)) if float(x).is_integer() else str(x) for x in f.range)
            hint.append(f"plausible range {lo}–{hi}{(' ' + f.unit) if f.unit else ''}")
        if f.type == "float" and f.decimals is not None:
            hint.append("whole number" if f.decimals == 0 else f"up to {f.decimals} decimal{'s' * (f.decimals > 1)}")
        if f.type == "integer":
            hint.append("whole number")
        stored = values.get(f.name)  # a coded value shows in the missing-data control, not in the input
        value = raw[f"f_{f.name}"] if raw is not None and f"f_{f.name}" in raw else _fmt_value(f, plain_value(stored))
        out.append({**form_values.missing_widget(protocol, f, fields, stored, raw),
                    "name": f.name, "label": f.label, "type": f.type, "unit": f.unit, "required": f.required,
                    "widget": widget, "options": options, "hint": "; ".join(hint), "value": value,
                    "inputmode": "numeric" if f.type == "integer" else ("decimal" if f.type == "float" else None),
                    "maxlength": f.max_length, "errors": (errors or {}).get(f.name, []),
                    "warnings": (warnings or {}).get(f.name, []), "queries": (queries or {}).get(f.name, 0)})
    return out


def _visit_blocked(protocol: Protocol, subject: dict[str, Any], visit_code: str) -> str | None:
    """Why forms of this visit cannot be entered yet (mirrors the capture service's rules)."""
    if visit_code == protocol.baseline_visit.code:
        return None
    if subject["status"] in ("screening", "eligible", "screen_failed"):
        return "The subject is not enrolled: only screening forms can be entered."
    day0 = next(v.code for v in protocol.visits if v.day == 0)
    if visit_code != day0 and subject["infusion_date"] is None:
        return f"No infusion recorded yet: enter the {day0} catheterization form first."
    return None


# ---------------------------------------------------------------------------------------------- log-in
@router.get("/", response_class=HTMLResponse)
def home() -> Response:
    return RedirectResponse("/subjects", status_code=303)


def _login_page(request: Request, status: int = 200, error: str | None = None, username: str = "",
                next_url: str = "/subjects") -> HTMLResponse:
    signer = ctx_of(request).signer
    value, cookie = signer.login_csrf()
    response = render(request, "login.html", status, error=error, username=username, login_csrf=value,
                      next_url=next_url)
    response.set_cookie(LOGIN_CSRF_COOKIE, cookie, max_age=3600, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/login")
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    if ctx_of(request).accounts.count() == 0 and client_address(request) in LOCAL_CLIENTS:
        return RedirectResponse("/setup", status_code=303)  # empty database: first use
    return _login_page(request, next_url=safe_return(next, "/subjects"))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    data = await posted_form(request, None)
    ctx = ctx_of(request)
    next_url = safe_return(data.get("next"), "/subjects")
    username = data.get("username", "")
    if not ctx.signer.check_login_csrf(request.cookies.get(LOGIN_CSRF_COOKIE), data.get("csrf_token")):
        return _login_page(request, 403, "The log-in form expired; please try again.", username, next_url)
    try:
        user = await run_in_threadpool(ctx.accounts.authenticate, username, data.get("password", ""),
                                       channel="web", client=client_address(request))
    except AuthenticationFailed as exc:
        return _login_page(request, 401, str(exc), username, next_url)
    session = ctx.signer.new_session(user.username, user.token_version)
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(request, response, ctx.signer.dump_session(session), ctx.signer.idle_timeout)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


LOCAL_CLIENTS = frozenset({"127.0.0.1", "::1", "localhost"})
_SETUP_LOCK = threading.Lock()  # one first administrator, even when two browsers submit at once


def _setup_refusal(request: Request) -> str | None:
    """Why the first-administrator page is not offered (None: it is)."""
    if ctx_of(request).accounts.count() > 0:
        return "This study database already has accounts: log in, or ask an administrator."
    if client_address(request) not in LOCAL_CLIENTS:
        return ("The first administrator can only be created from the server itself (http://127.0.0.1:PORT/setup), "
                "or on the command line: regenheart users add --role admin.")
    return None


@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request) -> Response:
    """First use: create the first administrator (no account yet, browser on the server machine only)."""
    refusal = _setup_refusal(request)
    if refusal:
        return render(request, "setup.html", 403, refusal=refusal, errors={}, raw={})
    value, cookie = ctx_of(request).signer.login_csrf()
    response = render(request, "setup.html", refusal=None, errors={}, raw={}, setup_csrf=value)
    response.set_cookie(LOGIN_CSRF_COOKIE, cookie, max_age=3600, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/setup")
    return response


@router.post("/setup", response_class=HTMLResponse)
async def setup_first_admin(request: Request) -> Response:
    data = await posted_form(request, None)
    ctx = ctx_of(request)
    if not ctx.signer.check_login_csrf(request.cookies.get(LOGIN_CSRF_COOKIE), data.get("csrf_token")):
        return render(request, "setup.html", 403, errors={}, raw=data,
                      refusal="The set-up form expired; reload the page and try again.")

    def work() -> Response:
        with _SETUP_LOCK:
            refusal = _setup_refusal(request)
            if refusal:
                return render(request, "setup.html", 403, refusal=refusal, errors={}, raw={})
            errors: dict[str, list[str]] = {}
            if data.get("password", "") != data.get("password2", ""):
                errors["password2"] = ["the two passwords differ"]
            try:
                if errors:
                    raise ValidationFailed([])
                actor = Actor(f"setup:{client_address(request)}"[:64], "admin")
                new = ctx.accounts.create_user(actor, data.get("username", "").strip(), "admin",
                                               data.get("password", ""), full_name=data.get("full_name") or None)
            except ValidationFailed as exc:
                errors.update(_violations_by_field(exc.violations))
                value, cookie = ctx.signer.login_csrf()
                response = render(request, "setup.html", 422, refusal=None, errors=errors,
                                  raw={k: v for k, v in data.items() if "password" not in k}, setup_csrf=value)
                response.set_cookie(LOGIN_CSRF_COOKIE, cookie, max_age=3600, httponly=True, samesite="strict",
                                    secure=request.url.scheme == "https", path="/setup")
                return response
        session = ctx.signer.new_session(new.username, new.token_version)
        response = redirect(request, "/admin/users", [("ok", (f"Administrator {new.username} created. Next: add "
                                                             "the site staff's accounts."))])
        set_session_cookie(request, response, ctx.signer.dump_session(session), ctx.signer.idle_timeout)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/setup")
        return response
    return await run_in_threadpool(work)


@router.post("/logout")
async def logout(request: Request, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    await posted_form(request, session)
    await run_in_threadpool(ctx_of(request).accounts.revoke_sessions, user.username, channel="web",
                            client=client_address(request))
    request.state.refresh_session = False
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ---------------------------------------------------------------------------------------------- subjects
@router.get("/subjects", response_class=HTMLResponse)
def subjects_page(request: Request, status: str | None = None, site: str | None = None, q: str | None = None,
                  sort: str = "subject", desc: int = 0, auth: Auth = Depends(page_session)) -> Response:
    return _subjects(request, auth[0], status, listing={"site": site, "q": q, "sort": sort, "desc": desc})


def _subjects(request: Request, user: UserView, status: str | None = None, http_status: int = 200,
              errors: dict[str, list[str]] | None = None, raw: dict[str, str] | None = None,
              listing: dict[str, Any] | None = None) -> HTMLResponse:
    ctx = ctx_of(request)
    listing = listing or {}
    sites = [s for s in SiteService(ctx.engine, ctx.protocol).list_sites() if user.actor.sees_site(s.code)]
    site = listing.get("site") if listing.get("site") in {s.code for s in sites} else None
    status = status if status in STATUS_LABELS else None
    sort = listing.get("sort") if listing.get("sort") in views.SUBJECT_SORTS else "subject"
    subjects = views.list_subjects(ctx.engine, ctx.protocol, user.actor, ctx.today(), status, site=site,
                                   search=listing.get("q"), sort=sort, descending=bool(listing.get("desc")))
    return render(request, "subjects.html", http_status, subjects=subjects, status_filter=status or "",
                  sites=sites, errors=errors or {}, raw=raw or {}, site_filter=site or "",
                  search=listing.get("q") or "", sort=sort, desc=bool(listing.get("desc")))


@router.post("/subjects", response_class=HTMLResponse)
async def screen_subject(request: Request, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        code = data.get("subject_code", "").strip()
        try:
            ctx.capture.screen_subject(user.actor, code, data.get("site_code", ""),
                                       data.get("screening_date") or None, data.get("consent_date") or None)
        except ValidationFailed as exc:
            return _subjects(request, user, None, 422, _violations_by_field(exc.violations), data)
        return redirect(request, f"/subjects/{quote(code)}", [("ok", f"Subject {code} registered for screening.")])
    return await run_in_threadpool(work)


@router.get("/subjects/{code}", response_class=HTMLResponse)
def casebook(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    return _casebook(request, auth[0], code)


def _casebook(request: Request, user: UserView, code: str, status: int = 200,
              messages: list[tuple[str, str]] | None = None, errors: dict[str, list[str]] | None = None,
              raw: dict[str, str] | None = None) -> HTMLResponse:
    ctx = ctx_of(request)
    subject = views.subject_detail(ctx.engine, ctx.protocol, user.actor, code, ctx.today())
    grid = {v["visit"]: {c["form"]: c for c in v["forms"]} for v in subject["visits"]}
    return render(request, "casebook.html", status, subject=subject, grid=grid, rows=views.form_rows(ctx.protocol),
                  messages=messages or [], errors=errors or {}, raw=raw or {},
                  disposition_fields=field_widgets(ctx.protocol, ctx.protocol.disposition.fields,
                                                   {"status": (subject["disposition"] or {}).get("status"),
                                                    "date": (subject["disposition"] or {}).get("date"),
                                                    "reason": (subject["disposition"] or {}).get("reason")},
                                                   errors, raw=raw or None),
                  # randomized version: the arm comes from the concealed list, so no arm is offered
                  arms=[] if ctx.protocol.active_version.randomization else ctx.protocol.active_version.arms)


@router.post("/subjects/{code}/eligibility", response_class=HTMLResponse)
async def evaluate_eligibility(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        try:
            outcome = ctx.capture.evaluate_eligibility(user.actor, code)
        except StateError as exc:
            return _casebook(request, user, code, 409, [("error", str(exc))])
        if outcome.eligible:
            msg = [("ok", "Eligible: every inclusion criterion is met and no exclusion criterion applies.")]
        else:
            failed = ", ".join(outcome.failed + [f"{c} (not assessed)" for c in outcome.not_assessed])
            msg = [("error", f"Not eligible: {failed}.")]
        return redirect(request, f"/subjects/{quote(code)}", msg)
    return await run_in_threadpool(work)


@router.post("/subjects/{code}/enrol", response_class=HTMLResponse)
async def enrol(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        try:
            arm = ctx.capture.enrol(user.actor, code, data.get("enrolled_date") or None, data.get("arm_code") or None)
        except ValidationFailed as exc:
            return _casebook(request, user, code, 422, [("error", "The subject was not enrolled.")],
                             _violations_by_field(exc.violations), data)
        except StateError as exc:
            return _casebook(request, user, code, 409, [("error", str(exc))])
        return redirect(request, f"/subjects/{quote(code)}", [("ok", f"Subject {code} enrolled (arm {arm}).")])
    return await run_in_threadpool(work)


@router.post("/subjects/{code}/withdraw", response_class=HTMLResponse)
async def withdraw_at_screening(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        try:
            ctx_of(request).capture.withdraw_screen_failure(user.actor, code, data.get("withdraw_reason"))
        except ValidationFailed as exc:
            return _casebook(request, user, code, 422, [("error", "The subject was not withdrawn.")],
                             {"withdraw_reason": [v.message for v in exc.violations]}, data)
        except StateError as exc:
            return _casebook(request, user, code, 409, [("error", str(exc))])
        return redirect(request, f"/subjects/{quote(code)}",
                        [("ok", f"Subject {code} withdrawn at screening (screen failure).")])
    return await run_in_threadpool(work)


@router.post("/subjects/{code}/disposition", response_class=HTMLResponse)
async def disposition(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        values = {f.name: data.get(f"f_{f.name}", "") for f in ctx.protocol.disposition.fields}
        try:
            ctx.capture.record_disposition(user.actor, code, values, reason=data.get("change_reason") or None)
        except ValidationFailed as exc:
            return _casebook(request, user, code, 422, [("error", "The disposition was not saved.")],
                             _violations_by_field(exc.violations), data)
        except StateError as exc:
            return _casebook(request, user, code, 409, [("error", str(exc))])
        return redirect(request, f"/subjects/{quote(code)}", [("ok", "Disposition recorded.")])
    return await run_in_threadpool(work)


# ---------------------------------------------------------------------------------------------- forms
def _next_form(protocol: Protocol, visit: str, form: str) -> str | None:
    """The form after ``form`` in the visit's order (None after the last)."""
    forms = protocol.visit(visit).forms
    i = forms.index(form)
    return forms[i + 1] if i + 1 < len(forms) else None


def _wording(protocol: Protocol, form: str) -> dict[str, str]:
    """Item wording from the licensed local file a form names (``wording_file``), if that file exists here.

    The file maps field names to text; it is never shipped. Missing or unreadable: no wording, the short
    labels stand alone."""
    path = protocol.forms[form].wording_file if form in protocol.forms else None
    if not path:
        return {}
    try:
        import yaml

        data = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _standing_warnings(request: Request, formdef: Any, data: dict[str, Any], code: str, visit: str,
                       form: str) -> list[dict[str, Any]]:
    """Soft-check warnings re-run on the stored values, each marked acknowledged when an audited
    acknowledgement covers the field's current value."""
    checks = [c for c in formdef.checks if c.severity == "warning"]
    if not checks:
        return []
    acknowledged = audit_trail.acknowledged_checks(ctx_of(request).engine, code, visit, form)
    out = []
    for check in checks:
        _errors, warnings = run_checks([check], plain(data))  # a coded value is missing to a check
        for w in warnings:
            out.append({"check": check.id, "field": w.field, "message": f"{w.message} (check {check.id})",
                        "acknowledged": acknowledged.get(check.id, "\0") == canonical(data.get(w.field))})
    return [w for w in out if not w["acknowledged"]]


def _form_page(request: Request, user: UserView, code: str, visit: str, form: str, *, status: int = 200,
               raw: dict[str, str] | None = None, errors: dict[str, list[str]] | None = None,
               messages: list[tuple[str, str]] | None = None,
               conflict: dict[str, str] | None = None) -> HTMLResponse:
    ctx = ctx_of(request)
    actor = user.actor
    view = ctx.capture.get_form(actor, code, visit, form)  # 404 for unknown visit/form/subject
    formdef = ctx.protocol.forms[form]
    subject = views.subject_detail(ctx.engine, ctx.protocol, actor, code, ctx.today())
    vdef = ctx.protocol.visit(visit)
    vinfo = views.visit_info(ctx.engine, actor, code, visit)
    queries = ctx.workflow.list_queries(actor, code, visit_code=visit, form_code=form)
    per_field: dict[str, int] = {}
    for q in queries:
        if q.status in views.UNRESOLVED:
            per_field[q.field] = per_field.get(q.field, 0) + 1
    blocked = _visit_blocked(ctx.protocol, subject, visit)
    can_edit = actor.may("enter_data") and not view.locked and blocked is None
    signatures = ctx.workflow.signatures(actor, code, visit, form)
    visit_row = next(v for v in subject["visits"] if v["visit"] == visit)
    standing = _standing_warnings(request, formdef, view.data, code, visit, form) if view.version else []
    warnings: dict[str, list[str]] = {}
    for w in standing:
        warnings.setdefault(w["field"], []).append(w["message"])
    widgets = field_widgets(ctx.protocol, form_values.entry_order(formdef.fields), view.data, errors, warnings,
                            per_field, raw)
    for w in widgets:
        w["wording"] = _wording(ctx.protocol, form).get(w["name"])
    conflict_rows = [{"label": f.label, "current": form_values.value_text(ctx.protocol, f, view.data.get(f.name)),
                      "yours": form_values.posted_text(ctx.protocol, f, conflict)}
                     for f in formdef.fields
                     if conflict is not None and form_values.posted_text(ctx.protocol, f, conflict)
                     != form_values.value_text(ctx.protocol, f, view.data.get(f.name))]
    return render(
        request, "form.html", status, subject=subject, visit=vdef, visit_row=visit_row, formdef=formdef,
        form_code=form, view=view, vinfo=vinfo, can_edit=can_edit, blocked=blocked,
        fields=widgets, standing_warnings=standing, conflict_rows=conflict_rows, in_conflict=conflict is not None,
        next_form=_next_form(ctx.protocol, visit, form),
        errors=errors or {}, raw=raw or {}, queries=queries, open_per_field=per_field, signatures=signatures,
        meanings=SIGNATURE_MEANINGS, messages=messages or [],
        visit_date_value=(raw or {}).get("visit_date", vinfo["visit_date"] if vinfo else ""),
        current_signature=next((s for s in signatures if s.current), None),
        field_choices=[(f.name, f.label) for f in formdef.fields] + [("visit_date", "Visit date")],
    )


@router.get("/subjects/{code}/forms/{visit}/{form}", response_class=HTMLResponse)
def form_page(request: Request, code: str, visit: str, form: str, auth: Auth = Depends(page_session)) -> Response:
    return _form_page(request, auth[0], code, visit, form)


@router.post("/subjects/{code}/forms/{visit}/{form}", response_class=HTMLResponse)
async def save_form(request: Request, code: str, visit: str, form: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        if visit not in ctx.protocol.visit_codes or form not in ctx.protocol.visit(visit).forms:
            raise NotFound(f"form {form} is not collected at visit {visit}")
        formdef = ctx.protocol.forms[form]
        values, unreadable = form_values.posted_values(formdef.fields, data)  # value or missing-data code
        try:
            version = int(data.get("version", "0"))
        except ValueError:
            version = 0
        vinfo = views.visit_info(ctx.engine, user.actor, code, visit)
        visit_date = data.get("visit_date") or None
        if vinfo and visit_date == vinfo["visit_date"]:
            visit_date = None
        try:
            if unreadable:
                raise ValidationFailed(unreadable)
            result = ctx.capture.save_form(user.actor, code, visit, form, values, reason=data.get("reason") or None,
                                           expected_version=version, visit_date=visit_date,
                                           complete=data.get("action") != "draft")
        except ValidationFailed as exc:
            n = len(exc.violations)
            return _form_page(request, user, code, visit, form, status=422, raw=data,
                              errors=_violations_by_field(exc.violations),
                              messages=[("error", (f"Not saved: {n} problem{'s' * (n > 1)} to correct "
                                                   "(see the messages next to the fields)."))])
        except Conflict as exc:
            # The form shows the user's own values and reason again; the saved values are listed beside
            # them, so the user decides what to keep and saves against the current version.
            return _form_page(request, user, code, visit, form, status=409, raw=data, conflict=data, messages=[(
                "error", (f"Not saved: {exc}. Someone saved this form meanwhile: their values are listed "
                          "beside yours below; your entries are kept in the form. Check them and save again."))])
        except StateError as exc:
            return _form_page(request, user, code, visit, form, status=409, messages=[("error", f"Not saved: {exc}")])
        messages = [("ok", f"Saved: version {result.version}, {result.status}"
                           + (f"; changed {', '.join(result.changed)}" if result.changed else "; no changes") + ".")]
        messages += [("warn", f"Check {w.field}: {w.message}") for w in result.warnings]
        following = _next_form(ctx.protocol, visit, form)
        if data.get("action") == "save_next" and not result.warnings:
            target = f"/subjects/{quote(code)}/forms/{visit}/{following}" if following else f"/subjects/{quote(code)}"
            return redirect(request, target, messages)
        return redirect(request, f"/subjects/{quote(code)}/forms/{visit}/{form}", messages)
    return await run_in_threadpool(work)


@router.post("/subjects/{code}/forms/{visit}/{form}/acknowledge", response_class=HTMLResponse)
async def acknowledge_warning(request: Request, code: str, visit: str, form: str,
                              auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        try:
            ctx_of(request).capture.acknowledge_warning(user.actor, code, visit, form, data.get("check", ""),
                                                        data.get("ack_reason"))
        except ValidationFailed as exc:
            return _form_page(request, user, code, visit, form, status=422, messages=[
                ("error", "Warning not acknowledged: " + "; ".join(v.message for v in exc.violations))])
        except StateError as exc:
            return _form_page(request, user, code, visit, form, status=409,
                              messages=[("error", f"Warning not acknowledged: {exc}")])
        return redirect(request, f"/subjects/{quote(code)}/forms/{visit}/{form}",
                        [("ok", f"Warning {data.get('check')} acknowledged; the reason is in the audit trail.")])
    return await run_in_threadpool(work)


def _workflow_action(action: str):
    async def handler(request: Request, code: str, visit: str, form: str,
                      auth: Auth = Depends(page_session)) -> Response:
        user, session = auth
        data = await posted_form(request, session)

        def work() -> Response:
            wf = ctx_of(request).workflow
            actor = user.actor
            version = int(data["version"]) if data.get("version", "").isdigit() else None
            try:
                if action == "verify":
                    wf.verify(actor, code, visit, form, expected_version=version, comment=data.get("comment"))
                    msg = "Source data verified."
                elif action == "lock":
                    wf.lock(actor, code, visit, form, reason=data.get("reason"), expected_version=version,
                            confirm=data.get("confirm") == "true")
                    msg = "Form locked."
                elif action == "unlock":
                    wf.unlock(actor, code, visit, form, reason=data.get("reason"))
                    msg = "Form unlocked."
                else:
                    sig = wf.sign(actor, code, visit, form, password=data.get("password", ""),
                                  meaning=data.get("meaning", ""), expected_version=version, channel="web",
                                  client=client_address(request))
                    msg = f"Signed by {sig.full_name} at {utc_display(sig.ts_utc)}."
            except ValidationFailed as exc:
                return _form_page(request, user, code, visit, form, status=422,
                                  messages=[("error", "; ".join(f"{v.field}: {v.message}" for v in exc.violations))])
            except (Conflict, StateError, AuthenticationFailed) as exc:
                return _form_page(request, user, code, visit, form,
                                  status=401 if isinstance(exc, AuthenticationFailed) else 409,
                                  messages=[("error", str(exc))])
            return redirect(request, f"/subjects/{quote(code)}/forms/{visit}/{form}", [("ok", msg)])
        return await run_in_threadpool(work)
    handler.__name__ = f"form_{action}"
    return handler


for _action in ("verify", "lock", "unlock", "sign"):
    router.add_api_route(f"/subjects/{{code}}/forms/{{visit}}/{{form}}/{_action}", _workflow_action(_action),
                         methods=["POST"], response_class=HTMLResponse)


# ---------------------------------------------------------------------------------------------- audit
def _audit_filter(user: str | None, date_from: str | None, date_to: str | None, visit: str | None,
                  form: str | None, field: str | None) -> audit_trail.AuditFilter:
    return audit_trail.AuditFilter(user or None, audit_trail.parse_day(date_from), audit_trail.parse_day(date_to),
                                   visit or None, form or None, field or None)


@router.get("/subjects/{code}/audit", response_class=HTMLResponse)
def audit_page(request: Request, code: str, visit: str | None = None, form: str | None = None,
               field: str | None = None, user: str | None = None, date_from: str | None = Query(None, alias="from"),
               date_to: str | None = Query(None, alias="to"), page: int = 1,
               auth: Auth = Depends(page_session)) -> Response:
    """One subject's audit trail: filtered by user, UTC date range, visit, form and field; newest first; paged."""
    ctx = ctx_of(request)
    flt = _audit_filter(user, date_from, date_to, visit, form, field)
    page = max(page, 1)
    rows, total, users = audit_trail.audit_page(ctx.engine, ctx.protocol, auth[0].actor, code, flt, page=page)
    pages = max((total + audit_trail.PAGE_SIZE - 1) // audit_trail.PAGE_SIZE, 1)
    subject = views.subject_detail(ctx.engine, ctx.protocol, auth[0].actor, code, ctx.today())
    forms = [(k, f.label) for k, f in ctx.protocol.forms.items()]
    if form in ctx.protocol.forms:
        fields = [(f.name, f.label) for f in ctx.protocol.forms[form].fields]
    else:
        fields = sorted({(f.name, f.label) for fd in ctx.protocol.forms.values() for f in fd.fields},
                        key=lambda x: x[1].lower())
    fields = [("visit_date", "Visit date")] + fields
    query = {k: v for k, v in {"user": flt.username, "from": date_from, "to": date_to, "visit": flt.visit,
                               "form": flt.form, "field": flt.field}.items() if v}
    base = f"/subjects/{quote(code)}/audit"
    return render(request, "audit.html", subject=subject, rows=rows, total=total, page=page, pages=pages, flt=flt,
                  users=users, forms=forms, fields=fields, visits=ctx.protocol.visit_codes,
                  csv_url=f"{base}.csv?{urlencode(query)}",
                  page_url=lambda n: f"{base}?{urlencode({**query, 'page': n})}")


@router.get("/subjects/{code}/audit.csv")
def audit_csv(request: Request, code: str, visit: str | None = None, form: str | None = None,
              field: str | None = None, user: str | None = None, date_from: str | None = Query(None, alias="from"),
              date_to: str | None = Query(None, alias="to"), auth: Auth = Depends(page_session)) -> Response:
    """The filtered audit trail as CSV (every matching row, newest first)."""
    ctx = ctx_of(request)
    flt = _audit_filter(user, date_from, date_to, visit, form, field)
    rows, _total, _users = audit_trail.audit_page(ctx.engine, ctx.protocol, auth[0].actor, code, flt, page_size=0)
    ctx.accounts.log_access(auth[0].username, auth[0].role, "export", "web", client_address(request),
                            f"audit trail CSV of {code}: {len(rows)} rows")
    name = f"audit_{code}.csv".replace("/", "_")
    return Response(audit_trail.audit_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# ---------------------------------------------------------------------------------------------- adverse events
def _ae_page(request: Request, user: UserView, code: str, *, seq: int | None = None, status: int = 200,
             raw: dict[str, str] | None = None, errors: dict[str, list[str]] | None = None,
             messages: list[tuple[str, str]] | None = None, conflict: bool = False) -> HTMLResponse:
    ctx = ctx_of(request)
    subject = views.subject_detail(ctx.engine, ctx.protocol, user.actor, code, ctx.today())
    events = views.adverse_events(ctx.engine, user.actor, code)
    current = views.adverse_event(ctx.engine, user.actor, code, seq) if seq is not None else None
    values = current["data"] if current else {}
    log_fields = ctx.protocol.adverse_events.fields
    conflict_rows = [{"label": f.label, "current": _fmt_value(f, values.get(f.name)),
                      "yours": (raw or {}).get(f"f_{f.name}", "")}
                     for f in log_fields
                     if conflict and (raw or {}).get(f"f_{f.name}", "") != _fmt_value(f, values.get(f.name))]
    return render(request, "adverse_events.html", status, subject=subject, events=events, current=current,
                  fields=field_widgets(ctx.protocol, log_fields, values, errors, raw=raw),
                  errors=errors or {}, raw=raw or {}, messages=messages or [], in_conflict=conflict,
                  conflict_rows=conflict_rows, decode=lambda cl, c: ctx.protocol.decode(cl, c))


@router.get("/subjects/{code}/adverse-events", response_class=HTMLResponse)
def adverse_events_page(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    return _ae_page(request, auth[0], code)


@router.get("/subjects/{code}/adverse-events/{seq}", response_class=HTMLResponse)
def adverse_event_page(request: Request, code: str, seq: int, auth: Auth = Depends(page_session)) -> Response:
    return _ae_page(request, auth[0], code, seq=seq)


async def _save_ae(request: Request, code: str, seq: int | None, auth: Auth) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        values = {f.name: data.get(f"f_{f.name}", "") for f in ctx.protocol.adverse_events.fields}
        try:
            if seq is None:
                new = ctx.capture.record_adverse_event(user.actor, code, values)
                msg = f"Adverse event {new} recorded."
            else:
                version = int(data["version"]) if data.get("version", "").isdigit() else None
                ctx.capture.update_adverse_event(user.actor, code, seq, values, reason=data.get("reason") or None,
                                                 expected_version=version)
                msg = f"Adverse event {seq} updated."
        except ValidationFailed as exc:
            return _ae_page(request, user, code, seq=seq, status=422, raw=data,
                            errors=_violations_by_field(exc.violations),
                            messages=[("error", "Not saved: correct the fields marked below.")])
        except Conflict as exc:  # keep the user's values and reason; the saved ones are listed beside them
            return _ae_page(request, user, code, seq=seq, status=409, raw=data, conflict=True, messages=[
                ("error", (f"Not saved: {exc}. Someone saved this event meanwhile: check the values below and "
                          "save again."))])
        except StateError as exc:
            return _ae_page(request, user, code, seq=seq, status=409, messages=[("error", str(exc))])
        return redirect(request, f"/subjects/{quote(code)}/adverse-events", [("ok", msg)])
    return await run_in_threadpool(work)


@router.post("/subjects/{code}/adverse-events", response_class=HTMLResponse)
async def record_adverse_event(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    return await _save_ae(request, code, None, auth)


@router.post("/subjects/{code}/adverse-events/{seq}", response_class=HTMLResponse)
async def update_adverse_event(request: Request, code: str, seq: int, auth: Auth = Depends(page_session)) -> Response:
    return await _save_ae(request, code, seq, auth)


# ---------------------------------------------------------------------------------------------- queries
# (the study-wide worklist /queries is in web/pages_daily.py)
@router.get("/subjects/{code}/queries", response_class=HTMLResponse)
def subject_queries(request: Request, code: str, status: str = "", auth: Auth = Depends(page_session)) -> Response:
    ctx = ctx_of(request)
    subject = views.subject_detail(ctx.engine, ctx.protocol, auth[0].actor, code, ctx.today())
    queries = ctx.workflow.list_queries(auth[0].actor, code, status=status or None)
    return render(request, "queries.html", queries=queries, subject=subject, status_filter=status,
                  form_labels={k: f.label for k, f in ctx.protocol.forms.items()})


@router.post("/subjects/{code}/queries", response_class=HTMLResponse)
async def open_query(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)
    back = safe_return(data.get("return_to"), f"/subjects/{quote(code)}/queries")

    def work() -> Response:
        try:
            q = ctx_of(request).workflow.open_query(user.actor, code, data.get("visit", ""), data.get("form", ""),
                                                    data.get("field", ""), data.get("text"))
        except ValidationFailed as exc:
            return redirect(request, back, [("error", "Query not opened: " + "; ".join(
                f"{v.field} {v.message}" for v in exc.violations))])
        except StateError as exc:
            return redirect(request, back, [("error", f"Query not opened: {exc}")])
        return redirect(request, back, [("ok", f"Query {q.seq} opened on {q.field}.")])
    return await run_in_threadpool(work)


def _query_action(action: str):
    async def handler(request: Request, code: str, seq: int, auth: Auth = Depends(page_session)) -> Response:
        user, session = auth
        data = await posted_form(request, session)
        back = safe_return(data.get("return_to"), f"/subjects/{quote(code)}/queries")

        def work() -> Response:
            wf = ctx_of(request).workflow
            method = {"answer": wf.answer_query, "close": wf.close_query, "reopen": wf.reopen_query}[action]
            try:
                q = method(user.actor, code, seq, data.get("text"))
            except ValidationFailed as exc:
                return redirect(request, back, [("error", "; ".join(f"{v.field} {v.message}"
                                                                    for v in exc.violations))])
            except (StateError, Conflict) as exc:
                return redirect(request, back, [("error", str(exc))])
            return redirect(request, back, [("ok", f"Query {q.seq} is now {q.status}.")])
        return await run_in_threadpool(work)
    handler.__name__ = f"query_{action}"
    return handler


for _action in ("answer", "close", "reopen"):
    router.add_api_route(f"/subjects/{{code}}/queries/{{seq}}/{_action}", _query_action(_action), methods=["POST"],
                         response_class=HTMLResponse)


# ---------------------------------------------------------------------------------------------- accounts
@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, auth: Auth = Depends(page_session)) -> Response:
    return _users(request, auth[0])


def _users(request: Request, user: UserView, status: int = 200, messages: list[tuple[str, str]] | None = None,
           errors: dict[str, list[str]] | None = None, raw: dict[str, str] | None = None) -> HTMLResponse:
    ctx = ctx_of(request)
    users = ctx.accounts.list_users(user.actor)
    return render(request, "users.html", status, users=users, roles=ROLES,
                  sites=SiteService(ctx.engine, ctx.protocol).list_sites(),
                  permissions=PERMISSIONS, messages=messages or [], errors=errors or {}, raw=raw or {})


@router.post("/admin/users", response_class=HTMLResponse)
async def create_user(request: Request, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        try:
            new = ctx_of(request).accounts.create_user(user.actor, data.get("username", ""), data.get("role", ""),
                                                       data.get("password", ""), site=data.get("site") or None,
                                                       full_name=data.get("full_name"))
        except ValidationFailed as exc:
            return _users(request, user, 422, [("error", "The account was not created.")],
                          _violations_by_field(exc.violations), data)
        return redirect(request, "/admin/users", [("ok", f"Account {new.username} created ({new.role}).")])
    return await run_in_threadpool(work)


@router.post("/admin/users/{username}", response_class=HTMLResponse)
async def update_user(request: Request, username: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        accounts = ctx_of(request).accounts
        try:
            if data.get("action") == "unlock":
                accounts.unlock(user.actor, username, reason=data.get("reason"), channel="web",
                                client=client_address(request))
                msg = f"Account {username} unlocked."
            elif data.get("action") == "password":
                accounts.reset_password(user.actor, username, data.get("password", ""), reason=data.get("reason"))
                msg = f"Password of {username} reset; the user's sessions were ended."
            else:
                accounts.update_user(user.actor, username, role=data.get("role", ""), site=data.get("site") or None,
                                     full_name=data.get("full_name", ""), active=data.get("active") == "1",
                                     reason=data.get("reason"))
                msg = f"Account {username} updated."
        except ValidationFailed as exc:
            problems = "; ".join(f"{v.field} {v.message}" for v in exc.violations)
            return _users(request, user, 422, [("error", f"{username} not changed: {problems}")])
        return redirect(request, "/admin/users", [("ok", msg)])
    return await run_in_threadpool(work)


@router.get("/admin/access-log", response_class=HTMLResponse)
def access_log_page(request: Request, username: str | None = None, auth: Auth = Depends(page_session)) -> Response:
    events = ctx_of(request).accounts.access_log(auth[0].actor, username=username or None, limit=1000)
    return render(request, "access_log.html", events=events, username=username or "")


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, auth: Auth = Depends(page_session)) -> Response:
    return render(request, "account.html", errors={})


@router.post("/account", response_class=HTMLResponse)
async def change_password(request: Request, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        accounts = ctx_of(request).accounts
        try:
            changed = accounts.change_own_password(user.actor, data.get("old_password", ""),
                                                   data.get("new_password", ""), channel="web",
                                                   client=client_address(request))
        except ValidationFailed as exc:
            return render(request, "account.html", 422, errors=_violations_by_field(exc.violations))
        except AuthenticationFailed as exc:
            return render(request, "account.html", 401, errors={"old_password": [str(exc)]})
        # the password change revoked every session: start a fresh one for this browser
        signer = ctx_of(request).signer
        new_session = signer.new_session(changed.username, changed.token_version)
        request.state.session = new_session
        return redirect(request, "/subjects", [("ok", "Password changed; other sessions were ended.")])
    return await run_in_threadpool(work)


