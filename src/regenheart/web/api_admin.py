"""REST API of study administration: the study's sites (listed, added, renamed, deactivated) and the correction
of a subject code entered wrongly at screening. Same conventions as :mod:`regenheart.web.api` (bearer token,
errors as ``ErrorResponse``, every refused value named in ``violations``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from regenheart.capture.permissions import Actor
from regenheart.capture.sites import SiteService
from regenheart.capture.subject_admin import SubjectAdmin
from regenheart.web import views
from regenheart.web.api import ERRORS, _Body
from regenheart.web.requests import api_actor, ctx_of

router = APIRouter(prefix="/api")


class SiteCreateRequest(_Body):
    code: str = Field(description="1-16 letters or digits, shaped as the protocol's sites when it has a subject-code "
                                  "rule (RegenHeart: two digits); never changes")
    name: str
    reason: str | None = None


class SiteUpdateRequest(_Body):
    name: str | None = None
    active: bool | None = Field(None, description="false: no new subjects or accounts at the site")
    reason: str
    version: int | None = Field(None, description="The site's version read with GET (409 when it changed)")


class SubjectCodeRequest(_Body):
    subject_code: str = Field(description="The correct code (the protocol's rule for the subject's site)")
    reason: str


@router.get("/sites", tags=["administration"], responses=ERRORS)
def list_sites(request: Request, actor: Actor = Depends(api_actor)) -> list[dict[str, Any]]:
    """The study's sites: the protocol's and those added by administrators, active or not."""
    ctx = ctx_of(request)
    return [s.as_dict() for s in SiteService(ctx.engine, ctx.protocol).list_sites()]


@router.post("/sites", tags=["administration"], status_code=201, responses=ERRORS)
def add_site(body: SiteCreateRequest, request: Request, actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Add an active site (administrators; audited as entity 'site')."""
    ctx = ctx_of(request)
    return SiteService(ctx.engine, ctx.protocol).add_site(actor, body.code, body.name, reason=body.reason).as_dict()


@router.patch("/sites/{code}", tags=["administration"], responses=ERRORS)
def update_site(code: str, body: SiteUpdateRequest, request: Request,
                actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Rename a site or (de)activate it (administrators; reason required; audited as entity 'site')."""
    ctx = ctx_of(request)
    changes = {k: getattr(body, k) for k in ("name", "active") if getattr(body, k) is not None}
    return SiteService(ctx.engine, ctx.protocol).update_site(actor, code, reason=body.reason,
                                                             expected_version=body.version, **changes).as_dict()


@router.post("/subjects/{subject_id}/subject-code", tags=["subjects"], responses=ERRORS)
def correct_subject_code(subject_id: str, body: SubjectCodeRequest, request: Request,
                         actor: Actor = Depends(api_actor)) -> dict[str, Any]:
    """Correct a subject code entered wrongly (data managers, administrators; reason required) while the subject is
    in screening with no later visit and no locked or signed form; the new code follows the protocol's rule and is
    unused. Audited (entity 'subject', field 'subject_code', old -> new). Returns the subject under its new code."""
    ctx = ctx_of(request)
    new = SubjectAdmin(ctx.engine, ctx.protocol).correct_subject_code(actor, subject_id, body.subject_code,
                                                                      reason=body.reason)
    return views.subject_detail(ctx.engine, ctx.protocol, actor, new, ctx.today())
