"""Permission matrix: every role x every action through the REST API.

Allowed: the action succeeds (2xx). Not allowed: 403 and nothing changes. The expected matrix is
written out here on purpose (not derived from permissions.PERMISSIONS), so a change to either is
noticed; a second test checks that both agree.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from regenheart.capture.permissions import PERMISSIONS, ROLES
from regenheart.store.models import AccessLog, AuditRecord

from .conftest import PASSWORD

ALL = set(ROLES)
SITE_STAFF = {"data_manager", "investigator", "coordinator"}

# action -> (method, path, json body, success status, roles allowed)
ACTIONS = {
    "list_subjects": ("GET", "/api/subjects", None, 200, ALL),
    "view_subject": ("GET", "/api/subjects/01-001", None, 200, ALL),
    "view_form": ("GET", "/api/subjects/01-001/forms/SCR/echo", None, 200, ALL),
    "view_audit": ("GET", "/api/subjects/01-001/audit", None, 200, ALL),
    "view_queries": ("GET", "/api/subjects/01-001/queries", None, 200, ALL),
    "view_adverse_events": ("GET", "/api/subjects/01-001/adverse-events", None, 200, ALL),
    "screen_subject": ("POST", "/api/subjects", {"subject_code": "01-050", "site_code": "01",
                                                 "screening_date": "2025-06-01", "consent_date": "2025-06-01"},
                       201, {"admin", "data_manager", "investigator", "coordinator"}),
    "save_form": ("PUT", "/api/subjects/01-001/forms/SCR/vital_signs",
                  {"data": {"sbp_mmhg": 118, "dbp_mmhg": 72, "heart_rate_bpm": 70, "temperature_c": 36.6},
                   "version": 0}, 200, SITE_STAFF),
    "record_visit": ("PUT", "/api/subjects/01-001/visits/D1", {"visit_date": "2025-01-25"}, 200, SITE_STAFF),
    "evaluate_eligibility": ("POST", "/api/subjects/01-002/eligibility", None, 200, SITE_STAFF),
    "enrol": ("POST", "/api/subjects/01-003/enrolment", {"enrolled_date": "2025-01-21"}, 200, SITE_STAFF),
    "record_adverse_event": ("POST", "/api/subjects/01-001/adverse-events", {"data": {
        "term": "Fever", "category": "FEVER", "onset_date": "2025-01-26", "stop_date": "2025-01-27",
        "ctcae_grade": 1, "serious": "N", "related_product": "POSSIBLE", "related_procedure": "NOT",
        "outcome": "RECOVERED", "max_temperature_c": 38.4}}, 201, SITE_STAFF),
    "record_disposition": ("PUT", "/api/subjects/01-001/disposition", {"data": {
        "status": "WITHDRAWAL", "date": "2025-06-01", "reason": "moved abroad"}}, 200, SITE_STAFF),
    "open_query": ("POST", "/api/subjects/01-001/queries", {"visit": "SCR", "form": "demographics",
                                                            "field": "weight_kg", "text": "Weight plausible?"},
                   201, {"monitor", "data_manager"}),
    "answer_query": ("POST", "/api/subjects/01-001/queries/1/answer", {"text": "Confirmed in source."}, 200,
                     SITE_STAFF),
    "close_query": ("POST", "/api/subjects/01-001/queries/1/close", {"text": "Resolved."}, 200,
                    {"monitor", "data_manager"}),
    "verify": ("POST", "/api/subjects/01-001/forms/SCR/echo/verify", {"version": 1}, 200, {"monitor"}),
    "lock": ("POST", "/api/subjects/01-001/forms/SCR/demographics/lock", {"confirm": True}, 200,
             {"data_manager"}),
    "unlock": ("POST", "/api/subjects/01-001/forms/SCR/nyha/unlock", {"reason": "late correction"}, 200,
               {"data_manager"}),
    "sign": ("POST", "/api/subjects/01-001/forms/SCR/medical_history/sign",
             {"password": PASSWORD, "meaning": "approval"}, 201, {"investigator"}),
    "list_users": ("GET", "/api/users", None, 200, {"admin"}),
    "create_user": ("POST", "/api/users", {"username": "new.user", "password": "a long enough secret",
                                           "role": "read_only"}, 201, {"admin"}),
    "update_user": ("PATCH", "/api/users/ro1", {"role": "statistician", "reason": "new duties"}, 200, {"admin"}),
    "access_log": ("GET", "/api/access-log", None, 200, {"admin"}),
}

# The API actions that map 1:1 onto an entry of permissions.PERMISSIONS.
PERMISSION_OF = {
    "screen_subject": "screen_subject", "save_form": "enter_data", "record_visit": "enter_data",
    "record_adverse_event": "enter_data", "record_disposition": "enter_data",
    "evaluate_eligibility": "evaluate_eligibility", "enrol": "enrol", "open_query": "open_query",
    "answer_query": "answer_query", "close_query": "close_query", "verify": "verify", "lock": "lock",
    "unlock": "lock", "sign": "sign", "list_users": "manage_users", "create_user": "manage_users",
    "update_user": "manage_users", "access_log": "manage_users", "view_subject": "view",
}


def audit_count(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(AuditRecord))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_role_action(client, app, auth, role, action):
    method, path, body, success, allowed = ACTIONS[action]
    headers = auth(role)
    before = audit_count(app.state.ctx.engine)
    response = client.request(method, path, json=body, headers=headers)
    if role in allowed:
        assert response.status_code == success, f"{role} {action}: {response.status_code} {response.text}"
    else:
        assert response.status_code == 403, f"{role} {action}: {response.status_code} {response.text}"
        body = response.json()
        assert body["error"] == "forbidden" and role in body["detail"]
        assert audit_count(app.state.ctx.engine) == before  # nothing written
        with Session(app.state.ctx.engine) as s:
            refusal = s.scalars(select(AccessLog).where(AccessLog.event == "permission_denied")
                                .order_by(AccessLog.id.desc())).first()
        assert refusal is not None and refusal.role == role and path in refusal.detail


def test_matrix_agrees_with_permissions_module():
    for action, permission in PERMISSION_OF.items():
        assert ACTIONS[action][4] == set(PERMISSIONS[permission]), action


@pytest.mark.parametrize("role", ["monitor", "statistician", "read_only"])
def test_reviewers_never_change_clinical_data(client, auth, role):
    headers = auth(role)
    attempts = [
        ("PUT", "/api/subjects/01-001/forms/SCR/echo", {"data": {"lvef_pct": 30.0}, "version": 1, "reason": "x"}),
        ("PUT", "/api/subjects/01-001/visits/SCR", {"visit_date": "2025-01-11", "reason": "x"}),
        ("POST", "/api/subjects/01-001/adverse-events", {"data": {"term": "x"}}),
        ("PUT", "/api/subjects/01-001/disposition", {"data": {"status": "COMPLETED", "date": "2025-07-01"}}),
        ("POST", "/api/subjects/01-003/enrolment", {"enrolled_date": "2025-01-21"}),
    ]
    for method, path, body in attempts:
        assert client.request(method, path, json=body, headers=headers).status_code == 403, path
    assert client.get("/api/subjects/01-001/forms/SCR/echo", headers=headers).json()["data"]["lvef_pct"] == 27.0


def test_site_staff_see_only_their_site(client, auth):
    site1 = auth("coord1")
    site2 = auth("coord2")
    assert [s["subject_id"] for s in client.get("/api/subjects", headers=site1).json()] == [
        "01-001", "01-002", "01-003"]
    assert [s["subject_id"] for s in client.get("/api/subjects", headers=site2).json()] == ["02-001"]
    for path in ("/api/subjects/02-001", "/api/subjects/02-001/forms/SCR/echo", "/api/subjects/02-001/audit",
                 "/api/subjects/02-001/queries"):
        assert client.get(path, headers=site1).status_code == 404, path
    response = client.put("/api/subjects/02-001/forms/SCR/nyha", json={"data": {"nyha_class": 2}, "reason": "x"},
                          headers=site1)
    assert response.status_code == 404
    response = client.post("/api/subjects", json={"subject_code": "02-009", "site_code": "02",
                                                  "screening_date": "2025-06-01", "consent_date": "2025-06-01"},
                           headers=site1)
    assert response.status_code == 403
    # a monitor without a site sees every site; its work list covers both
    assert len(client.get("/api/subjects", headers=auth("monitor")).json()) == 4
    assert client.get("/api/queries", headers=site2).json() == []
