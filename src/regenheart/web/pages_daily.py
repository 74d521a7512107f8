"""Browser pages of the daily work: record status dashboard, data quality, queries worklist, export.

Read functions live in :mod:`web.dashboard` and :mod:`web.exports`; this module turns query-string
filters into their arguments and renders. :func:`install` adds the router and the menu's open-query
count to an application.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from regenheart.capture.accounts import UserView
from regenheart.capture.errors import PermissionDenied
from regenheart.capture.sites import SiteService
from regenheart.store.db import DatabaseError
from regenheart.web import dashboard, exports
from regenheart.web.pages import Auth, posted_form, render
from regenheart.web.requests import client_address, ctx_of, page_session

router = APIRouter(include_in_schema=False)
QUERY_STATUSES = [("unresolved", "open or answered"), ("open", "open"), ("answered", "answered"),
                  ("closed", "closed"), ("", "all")]
FINDING_KINDS = dashboard.FINDING_KINDS


def install(app: FastAPI) -> None:
    """Add the daily-work pages to ``app`` and the open-query count to every page's menu."""
    ctx = app.state.ctx

    def open_queries(user: UserView | None) -> int:
        return dashboard.open_query_count(ctx.engine, user.actor) if user else 0
    ctx.templates.env.globals["open_query_count"] = open_queries
    app.include_router(router)


def _sites(request: Request, user: UserView) -> list[Any]:
    ctx = ctx_of(request)  # the database's sites (capture.sites: the protocol's, and those added by administrators)
    return [s for s in SiteService(ctx.engine, ctx.protocol).list_sites() if user.actor.sees_site(s.code)]


def _choice(value: str | None, allowed) -> str | None:
    """A filter value if it is one of ``allowed`` (anything else is ignored, never an error page)."""
    return value if value and value in allowed else None


# ---------------------------------------------------------------------------------------------- dashboard
@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request, site: str | None = None, visit: str | None = None, state: str | None = None,
                   q: str | None = None, sort: str = "subject", desc: int = 0,
                   auth: Auth = Depends(page_session)) -> Response:
    ctx = ctx_of(request)
    user = auth[0]
    sites = _sites(request, user)
    site = _choice(site, {s.code for s in sites})
    visit = _choice(visit, set(ctx.protocol.visit_codes))
    state = _choice(state, dashboard.CELL_STATES)
    sort = _choice(sort, dashboard.SORTS) or "subject"
    board = dashboard.dashboard(ctx.engine, ctx.protocol, user.actor, ctx.today(), site=site, visit=visit,
                                state=state, search=q, sort=sort, descending=bool(desc))
    return render(request, "dashboard.html", board=board, sites=sites, site=site or "", visit=visit or "",
                  state=state or "", q=q or "", sort=sort, desc=bool(desc), cell_states=dashboard.CELL_STATES,
                  cell_labels=dashboard.CELL_LABELS, sort_labels={
                      "subject": "subject", "site": "site", "overdue": "most overdue", "due": "most due",
                      "queries": "most open queries", "progress": "least progress"})


# ---------------------------------------------------------------------------------------------- data quality
DQ_PAGE_ROWS = 500  # rows drawn on the page; the CSV has them all


def _findings(request: Request, user: UserView, site: str | None, kind: str | None, q: str | None):
    ctx = ctx_of(request)
    sites = _sites(request, user)
    site = _choice(site, {s.code for s in sites})
    kind = _choice(kind, FINDING_KINDS)
    findings = dashboard.data_quality(ctx.engine, ctx.protocol, user.actor, ctx.today(), site=site)
    needle = (q or "").strip().lower()
    shown = [f for f in findings if (not kind or f.kind == kind) and (not needle or needle in f.subject_id.lower())]
    return findings, shown, sites, site, kind


@router.get("/data-quality", response_class=HTMLResponse)
def data_quality_page(request: Request, site: str | None = None, kind: str | None = None, q: str | None = None,
                      auth: Auth = Depends(page_session)) -> Response:
    ctx = ctx_of(request)
    findings, shown, sites, site, kind = _findings(request, auth[0], site, kind, q)
    query_string = request.url.query
    return render(request, "data_quality.html", findings=shown[:DQ_PAGE_ROWS], matching=len(shown),
                  counts=Counter(f.kind for f in findings), total=len(findings), sites=sites, site=site or "",
                  kind=kind or "", q=q or "", kinds=FINDING_KINDS,
                  csv_url="/data-quality.csv" + (f"?{query_string}" if query_string else ""),
                  form_labels={k: f.label for k, f in ctx.protocol.forms.items()})


DQ_COLUMNS = ("kind", "kind_label", "subject_id", "site", "visit", "form", "field", "value", "rule", "message", "link")


@router.get("/data-quality.csv")
def data_quality_csv(request: Request, site: str | None = None, kind: str | None = None, q: str | None = None,
                     auth: Auth = Depends(page_session)) -> Response:
    """Every finding matching the filters, as CSV (UTF-8 with a byte-order mark)."""
    _, shown, _, _, _ = _findings(request, auth[0], site, kind, q)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, DQ_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(f.as_dict() for f in shown)
    stamp = ctx_of(request).today().isoformat()
    return Response("\ufeff" + buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="data_quality_{stamp}.csv"'})


# ---------------------------------------------------------------------------------------------- queries
def _worklist(request: Request, user: UserView, params: dict[str, str | None]) -> tuple[list[dict[str, Any]], dict]:
    ctx = ctx_of(request)
    sites = _sites(request, user)
    age = params.get("age") or ""
    status = params.get("status")
    filters = {
        "site": _choice(params.get("site"), {s.code for s in sites}),
        "subject": (params.get("subject") or "").strip() or None,
        "visit": _choice(params.get("visit"), set(ctx.protocol.visit_codes)),
        "form": _choice(params.get("form"), set(ctx.protocol.forms)),
        "status": "unresolved" if status is None else (_choice(status, {c for c, _ in QUERY_STATUSES}) or None),
        "min_age": int(age) if age.isdigit() else None,
        "sort": _choice(params.get("sort"), dashboard.QUERY_SORTS) or "number",
        "descending": params.get("desc") == "1",
    }
    rows = dashboard.query_worklist(ctx.engine, ctx.protocol, user.actor, ctx.today(), **filters)
    return rows, filters


@router.get("/queries", response_class=HTMLResponse)
def queries_page(request: Request, auth: Auth = Depends(page_session)) -> Response:
    ctx = ctx_of(request)
    user = auth[0]
    rows, filters = _worklist(request, user, dict(request.query_params))
    query_string = request.url.query
    return render(request, "queries_worklist.html", queries=rows, filters=filters, sites=_sites(request, user),
                  statuses=QUERY_STATUSES, visits=ctx.protocol.visit_codes,
                  forms={k: f.label for k, f in ctx.protocol.forms.items()}, sorts=dashboard.QUERY_SORTS,
                  csv_url="/queries.csv" + (f"?{query_string}" if query_string else ""), subject=None)


CSV_COLUMNS = ("number", "subject_code", "site", "seq", "visit_code", "form_code", "field", "status", "opened_by",
               "opened_utc", "closed_utc", "age_days", "last_by", "last_text")


@router.get("/queries.csv")
def queries_csv(request: Request, auth: Auth = Depends(page_session)) -> Response:
    """The filtered worklist as CSV (UTF-8 with a byte-order mark so spreadsheets read accents)."""
    rows, _ = _worklist(request, auth[0], dict(request.query_params))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row | {"number": f"Q-{row['number']}"})
    stamp = ctx_of(request).today().isoformat()
    return Response("\ufeff" + buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="queries_{stamp}.csv"'})


# ---------------------------------------------------------------------------------------------- export
def _export_form(request: Request, user: UserView, status: int = 200, error: str | None = None,
                 chosen: dict[str, str] | None = None) -> HTMLResponse:
    if not user.actor.may("export"):
        raise PermissionDenied(f"role {user.role} may not export data")
    return render(request, "export.html", status, formats=exports.FORMATS, sites=_sites(request, user),
                  error=error, chosen=chosen or {}, messages=[("error", error)] if error else [])


@router.get("/export", response_class=HTMLResponse)
def export_page(request: Request, auth: Auth = Depends(page_session)) -> Response:
    return _export_form(request, auth[0])


@router.post("/export")
async def export_download(request: Request, auth: Auth = Depends(page_session)) -> Response:
    user, session = auth
    data = await posted_form(request, session)
    if not user.actor.may("export"):
        raise PermissionDenied(f"role {user.role} may not export data")

    def work() -> Response:
        ctx = ctx_of(request)
        fmt = data.get("format", "")
        site = data.get("site") or None
        labels = data.get("values") == "labels"
        what = f"format={fmt} site={site or 'all'} values={'labels' if labels else 'codes'}"
        try:
            result = exports.build_export(ctx.engine, ctx.protocol, user.actor, fmt, site=site, labels=labels)
        except exports.ExportError as exc:
            return _export_form(request, user, 422, f"Not exported: {exc}.", data)
        except DatabaseError as exc:  # the audit trail does not verify or the data do not reconcile with it
            ctx.accounts.log_access(user.username, user.role, "export_refused", "web", client_address(request),
                                    f"{what}: {exc}")
            return _export_form(request, user, 409, f"Not exported: {exc}", data)
        ctx.accounts.log_access(user.username, user.role, "export", "web", client_address(request),
                                f"{what} files={len(result.files)} subjects={result.subjects} "
                                f"bytes={len(result.content)} name={result.filename}")
        return Response(result.content, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{result.filename}"'})
    return await run_in_threadpool(work)
