"""REST API (JSON). Authenticate with POST /api/auth/token, then send ``Authorization: Bearer <token>``.

Status codes: 401 no/invalid token, 403 role or CSRF refusal, 404 unknown (or another site's)
subject/form, 409 stale version or action not allowed in the record's state, 422 invalid data
(``violations``: every broken rule with field, value, rule, message).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from regenheart.capture.accounts import UserView
from regenheart.capture.permissions import PERMISSIONS, ROLES, Actor
from regenheart.capture.service import SaveResult
from regenheart.capture.workflow import SIGNATURE_MEANINGS, ConfirmationRequired
from regenheart.web import views
from regenheart.web.requests import api_actor, api_user, client_address, ctx_of

router = APIRouter(prefix="/api")
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No, invalid, expired or revoked bearer token"},
    403: {"description": "The role may not do this"},
    404: {"description": "Unknown (or another site's) subject, visit, form or record"},
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(_Body):
    username: str
    password: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    username: str
    role: str
    site: str | None


class ScreenRequest(_Body):
    subject_code: str = Field(description="Subject identifier, e.g. 01-001 (becomes subject_id)")
    site_code: str
    screening_date: str = Field(description="YYYY-MM-DD")
    consent_date: str = Field(description="YYYY-MM-DD, on or before the screening date")


class EnrolRequest(_Body):
    enrolled_date: str
    arm_code: str | None = None


class VisitRequest(_Body):
    visit_date: str
    reason: str | None = None


class MissingValue(_Body):
    """A missing-data code recorded in place of a field's value (the protocol lists the study's codes)."""

    missing: str = Field(description="A missing-data code of the protocol (e.g. ND not done, UNK unknown)",
                         examples=["ND"])
    reason: str | None = Field(None, description="Why the value is missing (required by some codes)")


# One field's value: a value of the field's type (JSON scalar; dates as YYYY-MM-DD) or a missing-data code.
FieldValue = MissingValue | str | int | float | bool | None


def _plain_data(data: dict[str, FieldValue]) -> dict[str, Any]:
    """Form data as the capture service takes it (missing-data codes as plain mappings)."""
    return {k: v.model_dump() if isinstance(v, MissingValue) else v for k, v in data.items()}


class FormSaveRequest(_Body):
    data: dict[str, FieldValue] = Field(
        description='Field values (a partial update is allowed); {"missing": CODE, "reason": TEXT} in place of a '
                    "value records a missing-data code")
    version: int | None = Field(None, description="Version read with GET (0 for a new form); a different "
                                                  "current version is refused with 409")
    reason: str | None = Field(None, description="Required when changing saved data")
    visit_date: str | None = Field(None, description="Visit date (required for the first form of a visit)")
    complete: bool = Field(True, description="False saves a draft without requiring the required fields")


class LogFormRequest(_Body):
    data: dict[str, Any]
    version: int | None = None
    reason: str | None = None


class DispositionRequest(_Body):
    data: dict[str, Any]
    reason: str | None = None


class QueryOpenRequest(_Body):
    visit: str
    form: str
    field: str
    text: str


class QueryTextRequest(_Body):
    text: str | None = None
    version: int | None = None


class VerifyRequest(_Body):
    version: int | None = None
    comment: str | None = None


class LockRequest(_Body):
    version: int | None = None
    reason: str | None = None


class FormLockRequest(LockRequest):
    confirm: bool = Field(False, description="Lock an incomplete or unverified form too (without: 409 "
                                             "``confirmation_required`` saying why)")


class UnlockRequest(_Body):
    reason: str


class SignRequest(_Body):
    password: str
    meaning: str = Field("approval", description=f"one of {', '.join(SIGNATURE_MEANINGS)}")
    version: int | None = None


class AeQueryOpenRequest(_Body):
    field: str = Field(description="A field of the adverse-event log")
    text: str


class ReviewedItem(_Body):
    key: str = Field(description="'VISIT/form' (e.g. SCR/echo) or 'AE<n>' as listed by the review endpoint")
    version: int = Field(description="The version the user reviewed")


class BulkRequest(_Body):
    items: list[ReviewedItem] | None = Field(None, description="The items the user reviewed (from GET .../review); "
                                                               "if the action now applies to others, 409 and "
                                                               "nothing changes. Omitted: whatever applies now")


class BulkVerifyRequest(BulkRequest):
    comment: str | None = None


class BulkLockRequest(BulkRequest):
    confirm: bool = Field(False, description="Lock incomplete or unverified forms too (without: 409 listing them)")
    reason: str | None = None


class BulkSignRequest(BulkRequest):
    password: str = Field(description="Entered once for every form signed")
    meaning: str = Field("approval", description=f"one of {', '.join(SIGNATURE_MEANINGS)}")


class UserCreateRequest(_Body):
    username: str
    password: str
    role: str
    site: str | None = None
    full_name: str | None = None


class UserUpdateRequest(_Body):
    role: str | None = None
    site: str | None = None
    full_name: str | None = None
    active: bool | None = None
    reason: str


class PasswordResetRequest(_Body):
    password: str
    reason: str


class PasswordChangeRequest(_Body):
    old_password: str
    new_password: str


class ReasonRequest(_Body):
    reason: str


# ---------------------------------------------------------------------------------------------- auth
class HealthResponse(BaseModel):
    status: str = Field(description="ok, or unavailable when the database cannot serve")
    database: str = Field(description="reachable or unreachable")
    schema_revision: str | None = Field(description="Migration revision of the database")
    head_revision: str = Field(description="Newest migration revision of this regenheart")
    migrations_at_head: bool
    version: str = Field(description="regenheart version")


@router.get("/health", response_model=HealthResponse, tags=["operations"],
            responses={503: {"model": HealthResponse, "description": "Database unreachable or not migrated"}})
def health(request: Request) -> JSONResponse:
    """For load balancers and monitoring (no authentication): database reachable, migrations at head."""
    from sqlalchemy.exc import SQLAlchemyError

    from regenheart import __version__
    from regenheart.store.db import current_revision, head_revision

    head = head_revision()
    try:
        revision = current_revision(ctx_of(request).engine)
        reachable = True
    except SQLAlchemyError:
        revision, reachable = None, False
    ok = reachable and revision == head
    body = HealthResponse(status="ok" if ok else "unavailable", database="reachable" if reachable else "unreachable",
                          schema_revision=revision, head_revision=head, migrations_at_head=revision == head,
                          version=__version__)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.post("/auth/token", response_model=TokenResponse, tags=["auth"],
             responses={401: {"description": "Wrong username/password or account locked"}})
def issue_token(body: TokenRequest, request: Request) -> TokenResponse:
    """Exchange username and password for a signed bearer token (expires after ``expires_in`` s)."""
    ctx = ctx_of(request)
    user = ctx.accounts.authenticate(body.username, body.password, channel="api", client=client_address(request))
    token = ctx.signer.issue_token(user.username, user.token_version)
    return TokenResponse(access_token=token, expires_in=ctx.signer.token_ttl, username=user.username,
                         role=user.role, site=user.site)


@router.post("/auth/logout", tags=["auth"], status_code=204, responses=ERRORS)
def logout(request: Request, user: UserView = Depends(api_user)) -> None:
    """Revoke every token and session of the calling user."""
    ctx_of(request).accounts.revoke_sessions(user.username, channel="api", client=client_address(request))


@router.get("/me", tags=["auth"], responses=ERRORS)
def me(user: UserView = Depends(api_user)) -> dict[str, Any]:
    """The calling account and the actions its role allows."""
    return user.as_dict() | {"permissions": sorted(a for a, roles in PERMISSIONS.items() if user.role in roles)}


@router.post("/auth/password", tags=["auth"], status_code=204, responses=ERRORS)
def change_password(body: PasswordChangeRequest, request: Request, user: UserView = Depends(api_user)) -> None:
    """Change the caller's own password (revokes existing tokens)."""
    ctx_of(request).accounts.change_own_password(user.actor, body.old_password, body.new_password,
                                                 channel="api", client=client_address(request))


# ---------------------------------------------------------------------------------------------- protocol
@router.get("/protocol", tags=["protocol"], responses=ERRORS)
def protocol_schedule(request: Request, actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Schedule of assessments and form definitions (fields with type, unit, range, codes, required)."""
    p = ctx_of(request).protocol
    return {
        "study": p.study.nct_id, "protocol_version": p.active_protocol_version,
        "sites": [s.model_dump() for s in p.study.sites],
        "visits": [{"visit": v.code, "label": v.label, "day": v.day, "window": list(v.window), "forms": v.forms}
                   for v in p.visits],
        "forms": {code: {"label": f.label, "instrument": f.instrument, "fields": [
            fd.model_dump(exclude_none=True) | ({"codes": p.allowed_codes(fd)} if fd.type == "code" else {})
            for fd in f.fields]} for code, f in p.forms.items()},
        "signature_meanings": SIGNATURE_MEANINGS,
    }


# ---------------------------------------------------------------------------------------------- subjects
@router.get("/subjects", tags=["subjects"], responses=ERRORS)
def list_subjects(request: Request, status: str | None = None, actor: Actor = Depends(api_actor)) -> list[dict]:
    """Subjects visible to the caller (a site account sees its site only), with the next visit due."""
    ctx = ctx_of(request)
    return views.list_subjects(ctx.engine, ctx.protocol, actor, ctx.today(), status)


@router.post("/subjects", tags=["subjects"], status_code=201, responses=ERRORS)
def screen_subject(body: ScreenRequest, request: Request, actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Register a consented subject for screening."""
    ctx = ctx_of(request)
    ctx.capture.screen_subject(actor, body.subject_code, body.site_code, body.screening_date, body.consent_date)
    return views.subject_detail(ctx.engine, ctx.protocol, actor, body.subject_code, ctx.today())


@router.get("/subjects/{subject_id}", tags=["subjects"], responses=ERRORS)
def get_subject(subject_id: str, request: Request, actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """A subject with every scheduled visit (dates, window, study day) and the status of each form."""
    ctx = ctx_of(request)
    return views.subject_detail(ctx.engine, ctx.protocol, actor, subject_id, ctx.today())


@router.post("/subjects/{subject_id}/eligibility", tags=["subjects"], responses=ERRORS)
def evaluate_eligibility(subject_id: str, request: Request, actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Evaluate the inclusion/exclusion criteria on the screening data and record the outcome."""
    outcome = ctx_of(request).capture.evaluate_eligibility(actor, subject_id)
    return {"subject_id": subject_id, "eligible": outcome.eligible, "failed": outcome.failed,
            "not_assessed": outcome.not_assessed, "results": outcome.results}


@router.post("/subjects/{subject_id}/enrolment", tags=["subjects"], responses=ERRORS)
@router.post("/subjects/{subject_id}/enrol", tags=["subjects"], include_in_schema=False)
def enrol(subject_id: str, body: EnrolRequest, request: Request, actor: Actor = Depends(api_actor)) -> dict:
    """Enrol an eligible subject."""
    ctx = ctx_of(request)
    arm = ctx.capture.enrol(actor, subject_id, body.enrolled_date, body.arm_code)
    return {"subject_id": subject_id, "status": "enrolled", "arm": arm, "enrolled_date": body.enrolled_date}


@router.put("/subjects/{subject_id}/visits/{visit}", tags=["subjects"], responses=ERRORS)
def record_visit(subject_id: str, visit: str, body: VisitRequest, request: Request,
                 actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Record (or, with a reason, correct) a visit date; window deviations come back as warnings."""
    ctx = ctx_of(request)
    warnings = ctx.capture.record_visit(actor, subject_id, visit, body.visit_date, reason=body.reason)
    return {"subject_id": subject_id, "visit": visit, **(views.visit_info(ctx.engine, actor, subject_id, visit) or {}),
            "warnings": [w.as_dict() for w in warnings]}


@router.put("/subjects/{subject_id}/disposition", tags=["subjects"], responses=ERRORS)
def record_disposition(subject_id: str, body: DispositionRequest, request: Request,
                       actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Record completion or discontinuation (a reason is required to change it later)."""
    ctx = ctx_of(request)
    ctx.capture.record_disposition(actor, subject_id, body.data, reason=body.reason)
    return views.subject_detail(ctx.engine, ctx.protocol, actor, subject_id, ctx.today())


# ---------------------------------------------------------------------------------------------- forms
def _form_json(request: Request, actor: Actor, subject_id: str, visit: str, form: str) -> dict[str, Any]:
    ctx = ctx_of(request)
    view = ctx.capture.get_form(actor, subject_id, visit, form)
    return {"subject_id": subject_id, "visit": visit, "form": form, "data": view.data, "version": view.version,
            "status": view.status, "verified": view.verified, "locked": view.locked, "signed": view.signed,
            "derived": view.derived, "scoring_version": view.scoring_version,
            "visit_date": view.visit_date.isoformat() if view.visit_date else None,
            "open_queries": ctx.capture.unresolved_queries(actor, subject_id, visit, form)}


@router.get("/subjects/{subject_id}/forms/{visit}/{form}", tags=["forms"], responses=ERRORS)
def get_form(subject_id: str, visit: str, form: str, request: Request,
             actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Current data, version and status of a form ('not_started', version 0, if never saved)."""
    return _form_json(request, actor, subject_id, visit, form)


@router.put("/subjects/{subject_id}/forms/{visit}/{form}", tags=["forms"],
            responses=ERRORS | {409: {"description": "Stale version or locked form: nothing was written"},
                                422: {"description": "Every violation (field, value, rule, message)"}})
async def save_form(subject_id: str, visit: str, form: str, body: FormSaveRequest, request: Request,
                    actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Validate and save form data through the capture service (edit checks, reason for change). The response
    is the form as saved (as GET returns it) with the fields ``changed`` and the soft-check ``warnings``."""
    ctx = ctx_of(request)
    data = _plain_data(body.data)

    def save() -> tuple[SaveResult, int]:
        result = ctx.capture.save_form(actor, subject_id, visit, form, data, reason=body.reason,
                                       expected_version=body.version, visit_date=body.visit_date,
                                       complete=body.complete)
        # counted in the save's own transaction (no connection of its own, no database work on the event loop)
        return result, ctx.capture.unresolved_queries(actor, subject_id, visit, form)
    # Concurrent saves share one durable commit (acknowledged only once on disk; see capture.group_commit). The
    # event loop awaits it: no worker thread waits per request.
    if ctx.group_commit:
        result, open_queries = await asyncio.wrap_future(ctx.group_commit.submit(save, form=(subject_id, visit, form)))
    else:
        result, open_queries = await run_in_threadpool(save)
    # Built from what the save knows (no second read of the form): a saved form is never locked.
    return {"subject_id": subject_id, "visit": visit, "form": form, "data": result.data, "version": result.version,
            "status": result.status, "verified": result.verified, "locked": False, "signed": result.signed,
            "derived": result.derived, "scoring_version": result.scoring_version,
            "visit_date": result.visit_date.isoformat() if result.visit_date else None,
            "open_queries": open_queries,
            "changed": result.changed, "warnings": [w.as_dict() for w in result.warnings]}


class AcknowledgeRequest(_Body):
    reason: str = Field(description="Why the value stands although the soft check warns (audited), e.g. "
                                    "'confirmed with the echo lab'")


@router.post("/subjects/{subject_id}/forms/{visit}/{form}/warnings/{check_id}/acknowledge", tags=["forms"],
             responses=ERRORS | {409: {"description": "The form is not saved, locked, or the check does not warn on "
                                                      "the stored values"},
                                 422: {"description": "No reason given"}})
def acknowledge_warning(subject_id: str, visit: str, form: str, check_id: str, body: AcknowledgeRequest,
                        request: Request, actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Acknowledge a soft-check (warning-severity) check that warns on the stored values, with a reason (site
    staff, data managers). Audited as entity ``soft_check``; the warning is no longer listed as standing until the
    checked value changes. Unknown check: 404."""
    ctx_of(request).capture.acknowledge_warning(actor, subject_id, visit, form, check_id, body.reason)
    return _form_json(request, actor, subject_id, visit, form) | {"acknowledged": check_id,
                                                                   "reason": body.reason.strip()}


@router.post("/subjects/{subject_id}/forms/{visit}/{form}/verify", tags=["workflow"], responses=ERRORS)
def verify_form(subject_id: str, visit: str, form: str, request: Request, body: VerifyRequest | None = None,
                actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Source-data verification by a monitor (optionally of the version the monitor reviewed)."""
    body = body or VerifyRequest()
    ctx_of(request).workflow.verify(actor, subject_id, visit, form, expected_version=body.version,
                                    comment=body.comment)
    return _form_json(request, actor, subject_id, visit, form)


@router.post("/subjects/{subject_id}/forms/{visit}/{form}/lock", tags=["workflow"], responses=ERRORS)
def lock_form(subject_id: str, visit: str, form: str, request: Request, body: FormLockRequest | None = None,
              actor: Actor = Depends(api_actor)) -> Any:
    """Lock a form against changes (data managers; unresolved queries must be closed first). An incomplete or
    not source-data verified form: 409 ``confirmation_required`` saying why in ``violations``, unless ``confirm``."""
    body = body or FormLockRequest()
    try:
        ctx_of(request).workflow.lock(actor, subject_id, visit, form, reason=body.reason,
                                      expected_version=body.version, confirm=body.confirm)
    except ConfirmationRequired as exc:
        return _confirmation_required(exc)
    return _form_json(request, actor, subject_id, visit, form)


@router.post("/subjects/{subject_id}/forms/{visit}/{form}/unlock", tags=["workflow"], responses=ERRORS)
def unlock_form(subject_id: str, visit: str, form: str, body: UnlockRequest, request: Request,
                actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Unlock a form (data managers; reason required)."""
    ctx_of(request).workflow.unlock(actor, subject_id, visit, form, reason=body.reason)
    return _form_json(request, actor, subject_id, visit, form)


@router.post("/subjects/{subject_id}/forms/{visit}/{form}/sign", tags=["workflow"], status_code=201,
             responses=ERRORS)
def sign_form(subject_id: str, visit: str, form: str, body: SignRequest, request: Request,
              actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Electronic signature by an investigator (password re-entered; 21 CFR 11.50 manifestation)."""
    signature = ctx_of(request).workflow.sign(actor, subject_id, visit, form, password=body.password,
                                              meaning=body.meaning, expected_version=body.version,
                                              channel="api", client=client_address(request))
    return signature.as_dict()


@router.get("/subjects/{subject_id}/forms/{visit}/{form}/signatures", tags=["workflow"], responses=ERRORS)
def list_signatures(subject_id: str, visit: str, form: str, request: Request,
                    actor: Actor = Depends(api_actor)) -> list[dict[str, Any]]:
    """Every signature of the form: printed name, UTC time, meaning, version signed, still current."""
    return [s.as_dict() for s in ctx_of(request).workflow.signatures(actor, subject_id, visit, form)]


# ---------------------------------------------------------------------------------------------- audit
@router.get("/subjects/{subject_id}/audit", tags=["audit"], responses=ERRORS)
def subject_audit(subject_id: str, request: Request, visit: str | None = None, form: str | None = None,
                  field: str | None = None, actor: Actor = Depends(api_actor)) -> list[dict[str, Any]]:
    """Audit trail of the subject, oldest first: old and new value, user, role, UTC time, reason."""
    return views.audit_rows(ctx_of(request).engine, actor, subject_id, visit=visit, form=form, field=field)


# ---------------------------------------------------------------------------------------------- adverse events
@router.get("/subjects/{subject_id}/adverse-events", tags=["adverse events"], responses=ERRORS)
def list_adverse_events(subject_id: str, request: Request, actor: Actor = Depends(api_actor)) -> list[dict]:
    return views.adverse_events(ctx_of(request).engine, actor, subject_id)


@router.post("/subjects/{subject_id}/adverse-events", tags=["adverse events"], status_code=201, responses=ERRORS)
def record_adverse_event(subject_id: str, body: LogFormRequest, request: Request,
                         actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    ctx = ctx_of(request)
    seq = ctx.capture.record_adverse_event(actor, subject_id, body.data)
    return views.adverse_event(ctx.engine, actor, subject_id, seq)


@router.get("/subjects/{subject_id}/adverse-events/{seq}", tags=["adverse events"], responses=ERRORS)
def get_adverse_event(subject_id: str, seq: int, request: Request, actor: Actor = Depends(api_actor)) -> dict:
    return views.adverse_event(ctx_of(request).engine, actor, subject_id, seq)


@router.put("/subjects/{subject_id}/adverse-events/{seq}", tags=["adverse events"], responses=ERRORS)
def update_adverse_event(subject_id: str, seq: int, body: LogFormRequest, request: Request,
                         actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Correct or follow up an adverse event (reason required; ``version`` checked when given)."""
    ctx = ctx_of(request)
    ctx.capture.update_adverse_event(actor, subject_id, seq, body.data, reason=body.reason,
                                     expected_version=body.version)
    return views.adverse_event(ctx.engine, actor, subject_id, seq)


# ---------------------------------------------------------------------------------------------- AE review
def _ae_json(request: Request, actor: Actor, subject_id: str, seq: int) -> dict[str, Any]:
    return views.adverse_event(ctx_of(request).engine, actor, subject_id, seq)


@router.post("/subjects/{subject_id}/adverse-events/{seq}/queries", tags=["adverse events"], status_code=201,
             responses=ERRORS)
def open_ae_query(subject_id: str, seq: int, body: AeQueryOpenRequest, request: Request,
                  actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Raise a query on one field of an adverse event (monitors, data managers); answer and close it as any
    query (``/queries/{seq}/answer|close|reopen``)."""
    return ctx_of(request).workflow.open_ae_query(actor, subject_id, seq, body.field, body.text).as_dict()


@router.post("/subjects/{subject_id}/adverse-events/{seq}/verify", tags=["adverse events"], responses=ERRORS)
def verify_ae(subject_id: str, seq: int, request: Request, body: VerifyRequest | None = None,
              actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Source-data verification of an adverse event (monitors); a later change clears it."""
    body = body or VerifyRequest()
    ctx_of(request).workflow.verify_ae(actor, subject_id, seq, expected_version=body.version, comment=body.comment)
    return _ae_json(request, actor, subject_id, seq)


@router.post("/subjects/{subject_id}/adverse-events/{seq}/lock", tags=["adverse events"], responses=ERRORS)
def lock_ae(subject_id: str, seq: int, request: Request, body: FormLockRequest | None = None,
            actor: Actor = Depends(api_actor)) -> Any:
    """Lock an adverse event against changes (data managers; unresolved queries must be closed first). One not
    source-data verified: 409 ``confirmation_required`` saying why in ``violations``, unless ``confirm``."""
    body = body or FormLockRequest()
    try:
        ctx_of(request).workflow.lock_ae(actor, subject_id, seq, reason=body.reason, expected_version=body.version,
                                         confirm=body.confirm)
    except ConfirmationRequired as exc:
        return _confirmation_required(exc)
    return _ae_json(request, actor, subject_id, seq)


@router.post("/subjects/{subject_id}/adverse-events/{seq}/unlock", tags=["adverse events"], responses=ERRORS)
def unlock_ae(subject_id: str, seq: int, body: UnlockRequest, request: Request,
              actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Unlock an adverse event (data managers; reason required)."""
    ctx_of(request).workflow.unlock_ae(actor, subject_id, seq, reason=body.reason)
    return _ae_json(request, actor, subject_id, seq)


@router.post("/subjects/{subject_id}/adverse-events/{seq}/sign", tags=["adverse events"], status_code=201,
             responses=ERRORS)
def sign_ae(subject_id: str, seq: int, body: SignRequest, request: Request,
            actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Electronic signature of an adverse event by an investigator (password re-entered; 21 CFR 11.50)."""
    return ctx_of(request).workflow.sign_ae(actor, subject_id, seq, password=body.password, meaning=body.meaning,
                                            expected_version=body.version, channel="api",
                                            client=client_address(request)).as_dict()


@router.get("/subjects/{subject_id}/adverse-events/{seq}/signatures", tags=["adverse events"], responses=ERRORS)
def ae_signatures(subject_id: str, seq: int, request: Request, actor: Actor = Depends(api_actor)) -> list[dict]:
    """Every signature of the adverse event: printed name, UTC time, meaning, version signed, still current."""
    return [s.as_dict() for s in ctx_of(request).workflow.ae_signatures(actor, subject_id, seq)]


# ---------------------------------------------------------------------------------------------- review in bulk
BULK = ("verify", "lock", "sign")


def _confirmation_required(exc: ConfirmationRequired) -> JSONResponse:
    """409 listing what a lock would freeze unfinished (incomplete, unverified or not entered), one per item."""
    return JSONResponse({"error": "confirmation_required", "detail": str(exc), "violations": [
        {"field": i.key, "value": i.status, "rule": "incomplete" if i.status != "complete" else "unverified",
         "message": f"{i.label}: {i.note}"} for i in exc.items]}, status_code=409)


def _expected(body: BulkRequest | None) -> dict[str, int] | None:
    return None if body is None or body.items is None else {i.key: i.version for i in body.items}


def _bulk(request: Request, actor: Actor, subject_id: str, visit: str | None, action: str,
          body: BulkRequest | None) -> Any:
    wf = ctx_of(request).workflow
    if action == "verify":
        b = body if isinstance(body, BulkVerifyRequest) else BulkVerifyRequest()
        return wf.verify_many(actor, subject_id, visit, expected=_expected(body), comment=b.comment).as_dict()
    if action == "lock":
        b = body if isinstance(body, BulkLockRequest) else BulkLockRequest()
        try:
            return wf.lock_many(actor, subject_id, visit, confirm=b.confirm, reason=b.reason,
                                expected=_expected(body)).as_dict()
        except ConfirmationRequired as exc:
            return _confirmation_required(exc)
    sign = body if isinstance(body, BulkSignRequest) else BulkSignRequest(password="")
    return wf.sign_many(actor, subject_id, visit, password=sign.password, meaning=sign.meaning,
                        expected=_expected(body), channel="api", client=client_address(request)).as_dict()


_BULK_DOC = {
    "verify": "Source-data verify every complete, unverified form{scope} in one transaction (monitors).",
    "lock": "Lock every entered form{scope} in one transaction (data managers). Refused (409) while a form has "
            "unresolved queries; 409 ``confirmation_required`` listing incomplete, unverified or unentered forms "
            "in ``violations`` unless ``confirm`` is true.",
    "sign": "Sign every complete, unsigned form{scope} with one password entry (investigators): one signature with "
            "its own content hash per form, all in one transaction.",
}
_BULK_BODY = {"verify": BulkVerifyRequest, "lock": BulkLockRequest, "sign": BulkSignRequest}


def _bulk_route(action: str, casebook: bool):
    body_type = _BULK_BODY[action]
    if casebook:
        if action == "sign":
            def handler(subject_id: str, body: body_type, request: Request,  # type: ignore[valid-type]
                        actor: Actor = Depends(api_actor)) -> Any:
                return _bulk(request, actor, subject_id, None, action, body)
        else:
            def handler(subject_id: str, request: Request, body: body_type | None = None,  # type: ignore[valid-type]
                        actor: Actor = Depends(api_actor)) -> Any:
                return _bulk(request, actor, subject_id, None, action, body)
    elif action == "sign":
        def handler(subject_id: str, visit: str, body: body_type, request: Request,  # type: ignore[valid-type]
                    actor: Actor = Depends(api_actor)) -> Any:
            return _bulk(request, actor, subject_id, visit, action, body)
    else:
        def handler(subject_id: str, visit: str, request: Request,  # type: ignore[valid-type]
                    body: body_type | None = None, actor: Actor = Depends(api_actor)) -> Any:
            return _bulk(request, actor, subject_id, visit, action, body)
    # this module's annotations are strings (PEP 563): give FastAPI the body model itself
    handler.__annotations__["body"] = body_type if action == "sign" else body_type | None
    handler.__name__ = f"{action}_{'casebook' if casebook else 'visit'}"
    handler.__doc__ = _BULK_DOC[action].format(scope=" of the casebook and every adverse event" if casebook
                                               else " of the visit")
    return handler


for _action in BULK:
    router.add_api_route(f"/subjects/{{subject_id}}/visits/{{visit}}/{_action}", _bulk_route(_action, False),
                         methods=["POST"], tags=["review in bulk"], responses=ERRORS)
    router.add_api_route(f"/subjects/{{subject_id}}/casebook/{_action}", _bulk_route(_action, True),
                         methods=["POST"], tags=["review in bulk"], responses=ERRORS)


@router.get("/subjects/{subject_id}/visits/{visit}/review", tags=["review in bulk"], responses=ERRORS)
def review_visit(subject_id: str, visit: str, request: Request,
                 action: str = Query(description="verify, lock or sign"),
                 actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """What a bulk action on the visit would do: every form with its state, the keys it applies to (``todo``),
    the ones needing confirmation (``warnings``) and those blocking a lock (``blockers``)."""
    return ctx_of(request).workflow.review_plan(actor, subject_id, action, visit).as_dict()


@router.get("/subjects/{subject_id}/casebook/review", tags=["review in bulk"], responses=ERRORS)
def review_casebook(subject_id: str, request: Request, action: str = Query(description="verify, lock or sign"),
                    actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """As ``/visits/{visit}/review`` for every visit and adverse event of the subject."""
    return ctx_of(request).workflow.review_plan(actor, subject_id, action, None).as_dict()


# ---------------------------------------------------------------------------------------------- queries
@router.get("/queries", tags=["queries"], responses=ERRORS)
def all_queries(request: Request, status: str | None = Query(None, description="open, answered, closed or "
                                                                               "unresolved"),
                actor: Actor = Depends(api_actor)) -> list[dict[str, Any]]:
    """Queries of every visible subject (a monitor's work list)."""
    return [q.as_dict() for q in ctx_of(request).workflow.list_queries(actor, status=status)]


@router.get("/subjects/{subject_id}/queries", tags=["queries"], responses=ERRORS)
def subject_queries(subject_id: str, request: Request, status: str | None = None,
                    actor: Actor = Depends(api_actor)) -> list[dict[str, Any]]:
    return [q.as_dict() for q in ctx_of(request).workflow.list_queries(actor, subject_id, status=status)]


@router.post("/subjects/{subject_id}/queries", tags=["queries"], status_code=201, responses=ERRORS)
def open_query(subject_id: str, body: QueryOpenRequest, request: Request,
               actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Raise a query on one field of a form (monitors, data managers)."""
    return ctx_of(request).workflow.open_query(actor, subject_id, body.visit, body.form, body.field,
                                               body.text).as_dict()


@router.get("/subjects/{subject_id}/queries/{seq}", tags=["queries"], responses=ERRORS)
def get_query(subject_id: str, seq: int, request: Request, actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    return ctx_of(request).workflow.get_query(actor, subject_id, seq).as_dict()


@router.post("/subjects/{subject_id}/queries/{seq}/answer", tags=["queries"], responses=ERRORS)
def answer_query(subject_id: str, seq: int, body: QueryTextRequest, request: Request,
                 actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Answer a query (site staff, data managers)."""
    return ctx_of(request).workflow.answer_query(actor, subject_id, seq, body.text,
                                                 expected_version=body.version).as_dict()


@router.post("/subjects/{subject_id}/queries/{seq}/close", tags=["queries"], responses=ERRORS)
def close_query(subject_id: str, seq: int, request: Request, body: QueryTextRequest | None = None,
                actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Close a query (monitors, data managers)."""
    body = body or QueryTextRequest()
    return ctx_of(request).workflow.close_query(actor, subject_id, seq, body.text,
                                                expected_version=body.version).as_dict()


@router.post("/subjects/{subject_id}/queries/{seq}/reopen", tags=["queries"], responses=ERRORS)
def reopen_query(subject_id: str, seq: int, body: QueryTextRequest, request: Request,
                 actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Send an answered or closed query back to the site (monitors, data managers)."""
    return ctx_of(request).workflow.reopen_query(actor, subject_id, seq, body.text,
                                                 expected_version=body.version).as_dict()


# ---------------------------------------------------------------------------------------------- users
@router.get("/users", tags=["users"], responses=ERRORS)
def list_users(request: Request, actor: Actor = Depends(api_actor)) -> list[dict[str, Any]]:
    return [u.as_dict() for u in ctx_of(request).accounts.list_users(actor)]


@router.post("/users", tags=["users"], status_code=201, responses=ERRORS)
def create_user(body: UserCreateRequest, request: Request, actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    return ctx_of(request).accounts.create_user(actor, body.username, body.role, body.password, site=body.site,
                                                full_name=body.full_name).as_dict()


@router.patch("/users/{username}", tags=["users"], responses=ERRORS)
def update_user(username: str, body: UserUpdateRequest, request: Request,
                actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Change role, site (null = all sites), printed name or active flag; reason required."""
    changes: dict[str, Any] = {k: getattr(body, k) for k in ("role", "site", "full_name", "active")
                               if k in body.model_fields_set and (k == "site" or getattr(body, k) is not None)}
    return ctx_of(request).accounts.update_user(actor, username, reason=body.reason, **changes).as_dict()


@router.post("/users/{username}/unlock", tags=["users"], responses=ERRORS)
def unlock_user(username: str, body: ReasonRequest, request: Request,
                actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    return ctx_of(request).accounts.unlock(actor, username, reason=body.reason, channel="api",
                                           client=client_address(request)).as_dict()


@router.post("/users/{username}/password", tags=["users"], responses=ERRORS)
def reset_password(username: str, body: PasswordResetRequest, request: Request,
                   actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    return ctx_of(request).accounts.reset_password(actor, username, body.password, reason=body.reason).as_dict()


@router.get("/access-log", tags=["users"], responses=ERRORS)
def access_log(request: Request, username: str | None = None, limit: int = 500,
               actor: Actor = Depends(api_actor)) -> list[dict[str, Any]]:
    """Log-ins, failures, lock-outs, log-outs and permission refusals, newest first (administrators)."""
    return [e.as_dict() for e in ctx_of(request).accounts.access_log(actor, username=username, limit=limit)]


@router.get("/roles", tags=["users"], responses=ERRORS)
def roles(actor: Actor = Depends(api_actor)) -> dict[str, list[str]]:
    """Roles and the actions each may perform."""
    return {role: sorted(a for a, allowed in PERMISSIONS.items() if role in allowed) for role in ROLES}
