"""Browser pages of study administration: the sites page (``/admin/sites``: add a site, rename or deactivate one,
administrators) and the correction of a subject code entered wrongly at screening (a form on the casebook,
data managers and administrators).

Writes only through :class:`regenheart.capture.sites.SiteService` and
:class:`regenheart.capture.subject_admin.SubjectAdmin`; both audit every change.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from regenheart.capture.accounts import UserView
from regenheart.capture.common import require
from regenheart.capture.errors import Conflict, StateError, ValidationFailed
from regenheart.capture.sites import SiteService, site_code_shape
from regenheart.capture.subject_admin import SubjectAdmin
from regenheart.web import pages
from regenheart.web.pages import Auth, posted_form, redirect, render
from regenheart.web.requests import ctx_of, page_session

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Add the administration pages."""
    app.include_router(router)


def _by_field(exc: ValidationFailed) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in exc.violations:
        shown = "" if v.value in (None, "") or v.rule == "reason_required" else f" (entered: {v.value})"
        out.setdefault(v.field, []).append(f"{v.message}{shown}")
    return out


# ---------------------------------------------------------------------------------------------- sites
def _sites_page(request: Request, user: UserView, status: int = 200, messages: list[tuple[str, str]] | None = None,
                errors: dict[str, list[str]] | None = None, raw: dict[str, str] | None = None,
                failed: str | None = None) -> HTMLResponse:
    require(user.actor, "manage_sites")
    ctx = ctx_of(request)
    sites = SiteService(ctx.engine, ctx.protocol).list_sites()
    accounts = ctx.accounts.list_users(user.actor) if user.actor.may("manage_users") else []
    shape = site_code_shape(ctx.protocol)
    return render(request, "sites.html", status, sites=sites, messages=messages or [], errors=errors or {},
                  raw=raw or {}, failed=failed, shape=shape[1] if shape else None,
                  accounts={s.code: sum(1 for a in accounts if a.site == s.code) for s in sites})


@router.get("/admin/sites", response_class=HTMLResponse)
def sites_page(request: Request, auth: Auth = Depends(page_session)) -> Response:
    return _sites_page(request, auth[0])


@router.post("/admin/sites", response_class=HTMLResponse)
async def add_site(request: Request, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        try:
            site = SiteService(ctx.engine, ctx.protocol).add_site(user.actor, data.get("code", ""),
                                                                  data.get("name", ""), reason=data.get("reason"))
        except ValidationFailed as exc:
            return _sites_page(request, user, 422, [("error", "The site was not added.")], _by_field(exc), data)
        return redirect(request, "/admin/sites", [("ok", f"Site {site.code} ({site.name}) added.")])
    return await run_in_threadpool(work)


@router.post("/admin/sites/{code}", response_class=HTMLResponse)
async def update_site(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        version = int(data["version"]) if data.get("version", "").isdigit() else None
        try:
            site = SiteService(ctx.engine, ctx.protocol).update_site(
                user.actor, code, name=data.get("name", ""), active=data.get("active") == "1",
                reason=data.get("reason"), expected_version=version or None)
        except ValidationFailed as exc:
            problems = "; ".join(f"{v.field} {v.message}" for v in exc.violations)
            return _sites_page(request, user, 422, [("error", f"Site {code} not changed: {problems}")],
                               failed=code)
        except Conflict as exc:
            return _sites_page(request, user, 409, [("error", f"Site {code} not changed: {exc}")], failed=code)
        state = "active" if site.active else "inactive: no new subjects or accounts there"
        return redirect(request, "/admin/sites", [("ok", f"Site {site.code} saved ({site.name}; {state}).")])
    return await run_in_threadpool(work)


# ---------------------------------------------------------------------------------------------- subject code
@router.post("/subjects/{code}/subject-code", response_class=HTMLResponse)
async def correct_subject_code(request: Request, code: str, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)

    def work() -> Response:
        ctx = ctx_of(request)
        try:
            new = SubjectAdmin(ctx.engine, ctx.protocol).correct_subject_code(
                user.actor, code, data.get("new_subject_code", ""), reason=data.get("code_reason"))
        except ValidationFailed as exc:
            errors = {("new_subject_code" if k == "subject_code" else "code_reason" if k == "reason" else k): v
                      for k, v in _by_field(exc).items()}
            return pages._casebook(request, user, code, 422, [("error", "The subject code was not corrected.")],
                                   errors, data)
        except StateError as exc:
            return pages._casebook(request, user, code, 409, [("error", str(exc))])
        return redirect(request, f"/subjects/{quote(new)}",
                        [("ok", f"Subject code corrected: {code} is now {new} (audited with your reason).")])
    return await run_in_threadpool(work)
