"""Browser pages of review: a visit or a whole casebook verified, locked or signed in one action (the list of
forms shown before the user confirms), and the review of one adverse event (queries, SDV, lock, signature).

Writes only through :class:`regenheart.capture.workflow.WorkflowService`. :func:`install` must run before
:mod:`web.pages` is included: its ``/subjects/{code}/forms/ae/AE<n>`` route (where query lists link an adverse
event's query) must win over the generic form route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from regenheart.capture.accounts import AuthenticationFailed, UserView
from regenheart.capture.errors import Conflict, NotFound, StateError, ValidationFailed
from regenheart.capture.workflow import AE_VISIT, BULK_ACTIONS, SIGNATURE_MEANINGS, ConfirmationRequired
from regenheart.web import views
from regenheart.web.pages import Auth, posted_form, redirect, render
from regenheart.web.requests import client_address, ctx_of, page_session, utc_display

router = APIRouter(include_in_schema=False)
PERMISSION = {"verify": "verify", "lock": "lock", "sign": "sign"}
TITLES = {"verify": "Source-data verification", "lock": "Lock", "sign": "Electronic signature"}
VERBS = {"verify": "verified", "lock": "locked", "sign": "signed"}


def install(app: FastAPI) -> None:
    """Add the review pages (before the generic form pages) and the adverse-event review data to templates."""
    ctx = app.state.ctx

    def ae_review(user: UserView | None, code: str, seq: int) -> dict[str, Any]:
        """Signatures and queries of one adverse event, for the adverse-event page's review panel."""
        if user is None:
            return {}
        signatures = ctx.workflow.ae_signatures(user.actor, code, seq)
        return {"signatures": signatures, "current_signature": next((s for s in signatures if s.current), None),
                "queries": [q for q in ctx.workflow.list_queries(user.actor, code) if q.ae_seq == seq],
                "meanings": SIGNATURE_MEANINGS,
                "fields": [(f.name, f.label) for f in ctx.protocol.adverse_events.fields]}
    ctx.templates.env.globals["ae_review"] = ae_review
    app.include_router(router)


# ---------------------------------------------------------------------------------------------- bulk review
def _scope_url(code: str, visit: str | None, action: str) -> str:
    scope = f"visits/{visit}" if visit else "casebook"
    return f"/subjects/{quote(code)}/{scope}/review/{action}"


def _review_page(request: Request, user: UserView, code: str, visit: str | None, action: str, status: int = 200,
                 messages: list[tuple[str, str]] | None = None, confirm_items: list | None = None) -> HTMLResponse:
    ctx = ctx_of(request)
    if action not in BULK_ACTIONS:
        raise NotFound(f"no review action {action}")
    plan = ctx.workflow.review_plan(user.actor, code, action, visit)
    subject = views.subject_detail(ctx.engine, ctx.protocol, user.actor, code, ctx.today())
    return render(request, "review_bulk.html", status, subject=subject, plan=plan, action=action, visit=visit,
                  title=TITLES[action], allowed=user.actor.may(PERMISSION[action]), meanings=SIGNATURE_MEANINGS,
                  post_url=_scope_url(code, visit, action), messages=messages or [],
                  confirm_items=confirm_items or [])


@router.get("/subjects/{code}/visits/{visit}/review/{action}", response_class=HTMLResponse)
def review_visit(request: Request, code: str, visit: str, action: str, auth: Auth = Depends(page_session)) -> Response:
    return _review_page(request, auth[0], code, visit, action)


@router.get("/subjects/{code}/casebook/review/{action}", response_class=HTMLResponse)
def review_casebook(request: Request, code: str, action: str, auth: Auth = Depends(page_session)) -> Response:
    return _review_page(request, auth[0], code, None, action)


async def _apply(request: Request, code: str, visit: str | None, action: str, auth: Auth) -> Response:
    user, session = auth
    data = await posted_form(request, session)
    # the items listed to the user, with the versions shown: hidden inputs item:<key> = <version>
    expected = {k[5:]: int(v) for k, v in data.items() if k.startswith("item:") and v.isdigit()}

    def work() -> Response:
        wf = ctx_of(request).workflow
        actor = user.actor
        try:
            if action == "verify":
                result = wf.verify_many(actor, code, visit, expected=expected, comment=data.get("comment"))
            elif action == "lock":
                result = wf.lock_many(actor, code, visit, expected=expected, confirm=data.get("confirm") == "1",
                                      reason=data.get("reason"))
            elif action == "sign":
                result = wf.sign_many(actor, code, visit, password=data.get("password", ""),
                                      meaning=data.get("meaning", ""), expected=expected, channel="web",
                                      client=client_address(request))
            else:
                raise NotFound(f"no review action {action}")
        except ConfirmationRequired as exc:
            return _review_page(request, user, code, visit, action, 409, [(
                "error", "Not locked: confirm that the forms listed below may be locked as they are.")],
                confirm_items=exc.items)
        except ValidationFailed as exc:
            return _review_page(request, user, code, visit, action, 422, [
                ("error", "; ".join(f"{v.field}: {v.message}" for v in exc.violations))])
        except AuthenticationFailed as exc:
            return _review_page(request, user, code, visit, action, 401, [("error", str(exc))])
        except (Conflict, StateError) as exc:
            return _review_page(request, user, code, visit, action, 409, [("error", str(exc))])
        done = result.done
        what = f"{len(done)} item{'s' * (len(done) != 1)} of {result.plan.scope_label}"
        text = f"{what[0].upper()}{what[1:]} {VERBS[action]}"
        if result.signatures:
            text += f" by {result.signatures[0].full_name} at {utc_display(result.signatures[0].ts_utc)}"
        return redirect(request, f"/subjects/{quote(code)}", [("ok", text + ": " + ", ".join(i.key for i in done))])
    return await run_in_threadpool(work)


@router.post("/subjects/{code}/visits/{visit}/review/{action}", response_class=HTMLResponse)
async def apply_visit(request: Request, code: str, visit: str, action: str,
                      auth: Auth = Depends(page_session)) -> Response:
    return await _apply(request, code, visit, action, auth)


@router.post("/subjects/{code}/casebook/review/{action}", response_class=HTMLResponse)
async def apply_casebook(request: Request, code: str, action: str, auth: Auth = Depends(page_session)) -> Response:
    return await _apply(request, code, None, action, auth)


# ---------------------------------------------------------------------------------------------- adverse events
@router.get(f"/subjects/{{code}}/forms/{AE_VISIT}/{{ref}}")
def ae_query_target(code: str, ref: str, auth: Auth = Depends(page_session)) -> Response:
    """Query lists link a query as visit/form: an adverse event's query leads to the adverse event."""
    if not (ref.startswith("AE") and ref[2:].isdigit()):
        raise NotFound(f"no adverse event {ref}")
    return RedirectResponse(f"/subjects/{quote(code)}/adverse-events/{int(ref[2:])}", status_code=303)


def _ae_action(action: str):
    async def handler(request: Request, code: str, seq: int, auth: Auth = Depends(page_session)) -> Response:
        user, session = auth
        data = await posted_form(request, session)
        back = f"/subjects/{quote(code)}/adverse-events/{seq}"

        def work() -> Response:
            wf = ctx_of(request).workflow
            actor = user.actor
            version = int(data["version"]) if data.get("version", "").isdigit() else None
            try:
                if action == "verify":
                    wf.verify_ae(actor, code, seq, expected_version=version, comment=data.get("comment"))
                    msg = f"Adverse event {seq}: source data verified."
                elif action == "lock":
                    wf.lock_ae(actor, code, seq, reason=data.get("reason"), expected_version=version,
                               confirm=data.get("confirm") == "true")
                    msg = f"Adverse event {seq} locked."
                elif action == "unlock":
                    wf.unlock_ae(actor, code, seq, reason=data.get("reason"))
                    msg = f"Adverse event {seq} unlocked."
                elif action == "sign":
                    sig = wf.sign_ae(actor, code, seq, password=data.get("password", ""),
                                     meaning=data.get("meaning", ""), expected_version=version, channel="web",
                                     client=client_address(request))
                    msg = f"Adverse event {seq} signed by {sig.full_name} at {utc_display(sig.ts_utc)}."
                else:
                    q = wf.open_ae_query(actor, code, seq, data.get("field", ""), data.get("text"))
                    msg = f"Query {q.seq} opened on {q.field} of adverse event {seq}."
            except ValidationFailed as exc:
                return redirect(request, back, [("error", "Not done: " + "; ".join(
                    f"{v.field} {v.message}" for v in exc.violations))])
            except (Conflict, StateError, AuthenticationFailed) as exc:
                return redirect(request, back, [("error", f"Not done: {exc}")])
            return redirect(request, back + ("#ae-queries" if action == "queries" else ""), [("ok", msg)])
        return await run_in_threadpool(work)
    handler.__name__ = f"ae_{action}"
    return handler


for _action in ("verify", "lock", "unlock", "sign", "queries"):
    router.add_api_route(f"/subjects/{{code}}/adverse-events/{{seq}}/{_action}", _ae_action(_action),
                         methods=["POST"], response_class=HTMLResponse)
