"""REST API behaviour: validation (422 with every violation), optimistic versions (409), reason
for change, the audit trail endpoint, authentication (401), lock-out, 404s, no stack traces."""

from __future__ import annotations

import datetime as dt
import time

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from regenheart.store.audit import verify_chain
from regenheart.store.models import AccessLog, AuditRecord
from regenheart.web import create_app

from ..conftest import eligible_screening_data
from .conftest import FAST_HASHER, PASSWORD, TODAY, no_scorer, token

ECHO = "/api/subjects/01-001/forms/SCR/echo"
BAD_ECHO = {"modality": "MRI", "lvef_pct": 95, "lvedv_ml": 150, "lvesv_ml": 200, "lvedd_mm": "abc",
            "lvesd_mm": 50, "ivsd_mm": 9.55, "bogus": 1}


def test_openapi_lists_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/auth/token", "/api/subjects", "/api/subjects/{subject_id}",
                 "/api/subjects/{subject_id}/forms/{visit}/{form}", "/api/subjects/{subject_id}/audit",
                 "/api/subjects/{subject_id}/adverse-events", "/api/subjects/{subject_id}/queries",
                 "/api/subjects/{subject_id}/forms/{visit}/{form}/verify",
                 "/api/subjects/{subject_id}/forms/{visit}/{form}/lock",
                 "/api/subjects/{subject_id}/forms/{visit}/{form}/unlock",
                 "/api/subjects/{subject_id}/forms/{visit}/{form}/sign",
                 "/api/subjects/{subject_id}/eligibility", "/api/subjects/{subject_id}/enrolment"):
        assert path in paths, path
    assert set(paths["/api/subjects/{subject_id}/forms/{visit}/{form}"]) == {"get", "put"}


def test_token_shape(client):
    body = client.post("/api/auth/token", json={"username": "coord1", "password": PASSWORD}).json()
    assert body["token_type"] == "bearer" and body["access_token"] and body["expires_in"] > 0
    assert body["role"] == "coordinator" and body["site"] == "01"


def test_invalid_form_returns_every_violation_and_writes_nothing(client, auth, app):
    headers = auth("coordinator")
    client.post("/api/subjects", json={"subject_code": "01-010", "site_code": "01", "screening_date": "2025-03-01",
                                       "consent_date": "2025-03-01"}, headers=headers)
    before = verify_chain(app.state.ctx.engine).records
    response = client.put("/api/subjects/01-010/forms/SCR/echo", headers=headers,
                          json={"data": BAD_ECHO, "version": 0, "visit_date": "2025-03-01"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_failed"
    found = {(v["field"], v["rule"]) for v in body["violations"]}
    assert found == {("modality", "codelist"), ("lvef_pct", "range"), ("lvedd_mm", "type"),
                     ("ivsd_mm", "decimals"), ("bogus", "unknown_field"), ("lvpwd_mm", "required"),
                     ("lvesv_ml", "ECHO01")}
    for v in body["violations"]:
        assert set(v) == {"field", "value", "rule", "message"} and v["message"]
    lvef = next(v for v in body["violations"] if v["field"] == "lvef_pct")
    assert lvef["value"] == 95 and "between 5 and 80 %" in lvef["message"]
    assert verify_chain(app.state.ctx.engine).records == before
    form = client.get("/api/subjects/01-010/forms/SCR/echo", headers=headers).json()
    assert form["status"] == "not_started" and form["version"] == 0 and form["visit_date"] is None


def test_malformed_body_is_422_with_violations(client, auth):
    response = client.put(ECHO, json={"dataa": {}}, headers=auth("coordinator"))
    assert response.status_code == 422
    fields = {v["field"] for v in response.json()["violations"]}
    assert {"data", "dataa"} <= fields


def test_first_entry_then_change_needs_reason_and_current_version(client, auth):
    headers = auth("coordinator")
    form = client.get(ECHO, headers=headers).json()
    assert form["version"] == 1 and form["status"] == "complete" and form["data"]["lvef_pct"] == 27.0
    # change without a reason: 422, nothing written
    response = client.put(ECHO, json={"data": {"lvef_pct": 28.5}, "version": 1}, headers=headers)
    assert response.status_code == 422
    assert [(v["field"], v["rule"]) for v in response.json()["violations"]] == [("reason", "reason_required")]
    # with a reason: saved as version 2
    response = client.put(ECHO, json={"data": {"lvef_pct": 28.5}, "version": 1, "reason": "transcription error"},
                          headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2 and body["changed"] == ["lvef_pct"] and body["data"]["lvef_pct"] == 28.5
    # a second client still holding version 1: 409, nothing overwritten
    response = client.put(ECHO, json={"data": {"lvef_pct": 30.0}, "version": 1, "reason": "other"},
                          headers=auth("investigator"))
    assert response.status_code == 409 and response.json()["error"] == "version_conflict"
    assert client.get(ECHO, headers=headers).json()["data"]["lvef_pct"] == 28.5


def test_new_form_with_version_zero_conflicts_when_someone_saved_first(client, auth):
    body = {"data": {"sbp_mmhg": 120, "dbp_mmhg": 80, "heart_rate_bpm": 60, "temperature_c": 36.5}, "version": 0}
    path = "/api/subjects/01-001/forms/SCR/vital_signs"
    assert client.put(path, json=body, headers=auth("coordinator")).status_code == 200
    assert client.put(path, json=body, headers=auth("investigator")).status_code == 409


def test_warnings_are_returned_with_a_successful_save(client, auth):
    response = client.put(ECHO, headers=auth("coordinator"),
                          json={"data": {"lvef_pct": 60.0}, "version": 1, "reason": "re-measured"})
    assert response.status_code == 200
    assert [w["rule"] for w in response.json()["warnings"]] == ["ECHO03"]


def test_audit_endpoint_shows_old_new_user_role_time_reason(client, auth):
    headers = auth("coordinator")
    client.put(ECHO, json={"data": {"lvef_pct": 28.5}, "version": 1, "reason": "transcription error"},
               headers=headers)
    rows = client.get("/api/subjects/01-001/audit", params={"form": "echo", "field": "lvef_pct"},
                      headers=auth("monitor")).json()
    changes = [r for r in rows if r["action"] in ("create", "update")]
    assert [(r["old_value"], r["new_value"], r["reason"]) for r in changes] == [
        (None, 27.0, None), (27.0, 28.5, "transcription error")]
    assert changes[1]["username"] == "coord1" and changes[1]["role"] == "coordinator"
    stamp = changes[1]["ts_utc"]
    assert stamp.endswith("Z") and dt.datetime.fromisoformat(stamp).year >= 2025
    assert [r["action"] for r in rows if r["entity"] == "query"] == ["query_open"]  # Q1 is on this field
    # filters: visit, form
    visit_rows = client.get("/api/subjects/01-001/audit", params={"visit": "D0"}, headers=headers).json()
    assert visit_rows and {r["visit"] for r in visit_rows} == {"D0"}
    all_rows = client.get("/api/subjects/01-001/audit", headers=headers).json()
    assert [r["seq"] for r in all_rows] == sorted(r["seq"] for r in all_rows)


def test_subject_detail_has_visits_form_status_and_next_visit(client, auth):
    subject = client.get("/api/subjects/01-001", headers=auth("coordinator")).json()
    assert subject["status"] == "infused" and subject["infusion_date"] == "2025-01-24"
    visits = {v["visit"]: v for v in subject["visits"]}
    assert visits["D0"]["visit_date"] == "2025-01-24" and visits["D0"]["study_day"] == 0
    assert visits["M1"]["target_date"] == "2025-02-23"
    assert (visits["M1"]["window_start"], visits["M1"]["window_end"]) == ("2025-02-16", "2025-03-02")
    forms = {f["form"]: f for f in visits["SCR"]["forms"]}
    assert forms["nyha"]["status"] == "locked" and forms["echo"]["open_queries"] == 1
    assert forms["echo"]["status"] == "complete" and forms["cardiac_ct"]["status"] == "not_started"
    # next visit = the first visit with required forms not entered: baseline (8 of 13 SCR forms missing)
    assert subject["next_visit"]["visit"] == "SCR" and subject["next_visit"]["state"] == "overdue"
    assert subject["next_visit"]["missing"] == 8
    assert subject["open_queries"] == 1


def test_screen_and_enrol_through_the_api(client, auth):
    headers = auth("coordinator")
    response = client.post("/api/subjects", headers=headers, json={
        "subject_code": "01-020", "site_code": "01", "screening_date": "2025-05-02", "consent_date": "2025-05-01"})
    assert response.status_code == 201 and response.json()["status"] == "screening"
    first = True
    for form, data in eligible_screening_data().items():
        body = {"data": data, "version": 0} | ({"visit_date": "2025-05-02"} if first else {})
        first = False
        assert client.put(f"/api/subjects/01-020/forms/SCR/{form}", json=body, headers=headers).status_code == 200
    outcome = client.post("/api/subjects/01-020/eligibility", headers=headers).json()
    assert outcome["eligible"] is True and outcome["failed"] == []
    response = client.post("/api/subjects/01-020/enrolment", json={"enrolled_date": "2025-05-10"}, headers=headers)
    assert response.status_code == 200 and response.json()["arm"] == "MSC"
    # duplicate subject code and a bad date: every problem listed
    response = client.post("/api/subjects", headers=headers, json={
        "subject_code": "01-020", "site_code": "01", "screening_date": "2025-13-01", "consent_date": "2025-05-01"})
    assert response.status_code == 422
    assert {(v["field"], v["rule"]) for v in response.json()["violations"]} == {
        ("screening_date", "type"), ("subject_code", "unique")}


def test_post_infusion_visit_before_enrolment_is_409(client, auth):
    response = client.put("/api/subjects/01-002/forms/M1/nyha", headers=auth("coordinator"),
                          json={"data": {"nyha_class": 2}, "version": 0, "visit_date": "2025-02-20"})
    assert response.status_code == 409 and response.json()["error"] == "invalid_state"


def test_unknown_things_are_404(client, auth):
    headers = auth("coordinator")
    for path in ("/api/subjects/99-999", "/api/subjects/01-001/forms/SCR/nope", "/api/subjects/01-001/forms/X/echo",
                 "/api/subjects/01-001/forms/D1/echo", "/api/subjects/01-001/queries/99",
                 "/api/subjects/01-001/adverse-events/7", "/api/nothing-here"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


def test_no_token_bad_token_expired_token_are_401(client, db_path, web_protocol):
    assert client.get("/api/subjects").status_code == 401
    response = client.get("/api/subjects", headers={"Authorization": "Bearer forged.token.value"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/subjects", headers={"Authorization": "Basic abc"}).status_code == 401
    short = create_app(db_path, web_protocol, scorer=no_scorer, today=lambda: TODAY, hasher=FAST_HASHER,
                       token_ttl=1)
    with TestClient(short) as c:
        headers = token(c, "coord1")
        assert c.get("/api/subjects", headers=headers).status_code == 200
        time.sleep(2.1)
        assert c.get("/api/subjects", headers=headers).status_code == 401


def test_wrong_password_is_401_and_logged(client, app):
    response = client.post("/api/auth/token", json={"username": "coord1", "password": "nope"})
    assert response.status_code == 401 and response.json()["error"] == "authentication_failed"
    response = client.post("/api/auth/token", json={"username": "nobody", "password": "nope"})
    assert response.status_code == 401 and response.json()["detail"] == "invalid username or password"
    with Session(app.state.ctx.engine) as s:
        events = [(e.username, e.event, e.channel) for e in s.scalars(select(AccessLog).order_by(AccessLog.id))]
    assert events[-2:] == [("coord1", "login_failure", "api"), ("nobody", "login_failure", "api")]


def test_lockout_after_five_failures_then_unlock(client, app, auth):
    for _ in range(4):
        assert client.post("/api/auth/token", json={"username": "coord1", "password": "bad"}).status_code == 401
    response = client.post("/api/auth/token", json={"username": "coord1", "password": "bad"})
    assert response.status_code == 401 and response.json()["error"] == "account_locked"
    # even the right password is refused while locked
    response = client.post("/api/auth/token", json={"username": "coord1", "password": PASSWORD})
    assert response.status_code == 401 and response.json()["error"] == "account_locked"
    engine = app.state.ctx.engine
    with Session(engine) as s:
        events = [e.event for e in s.scalars(select(AccessLog).where(AccessLog.username == "coord1"))]
        lockout = s.scalars(select(AuditRecord).where(AuditRecord.action == "lockout")).one()
    assert events[-7:] == ["login_failure"] * 5 + ["lockout", "login_refused_locked"]
    assert lockout.entity == "user" and lockout.record_key == "coord1" and lockout.field == "locked_until"
    users = {u["username"]: u for u in client.get("/api/users", headers=auth("admin")).json()}
    assert users["coord1"]["locked_until"] is not None
    # the lock-out expires by itself after 15 minutes ...
    accounts = app.state.ctx.accounts
    real = accounts.clock
    accounts.clock = lambda: real() + dt.timedelta(minutes=16)
    try:
        assert client.post("/api/auth/token", json={"username": "coord1", "password": PASSWORD}).status_code == 200
    finally:
        accounts.clock = real
    # ... or an administrator lifts it (reason required, audited)
    for _ in range(5):
        client.post("/api/auth/token", json={"username": "coord1", "password": "bad"})
    assert client.post("/api/users/coord1/unlock", json={"reason": ""}, headers=auth("admin")).status_code == 422
    assert client.post("/api/users/coord1/unlock", json={"reason": "called the help desk"},
                       headers=auth("admin")).status_code == 200
    assert client.post("/api/auth/token", json={"username": "coord1", "password": PASSWORD}).status_code == 200
    assert verify_chain(engine).ok


def test_unknown_usernames_lock_out_the_same_way(client):
    for _ in range(5):
        client.post("/api/auth/token", json={"username": "ghost", "password": "x"})
    response = client.post("/api/auth/token", json={"username": "ghost", "password": "x"})
    assert response.json()["error"] == "account_locked"


def test_logout_and_role_change_revoke_tokens(client, auth):
    headers = token(client, "coord1")
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/subjects", headers=headers).status_code == 401
    headers = token(client, "ro1")
    response = client.patch("/api/users/ro1", json={"role": "statistician", "reason": "new duties"},
                            headers=auth("admin"))
    assert response.status_code == 200 and response.json()["role"] == "statistician"
    assert client.get("/api/subjects", headers=headers).status_code == 401
    assert token(client, "ro1")  # a new log-in works and carries the new role
    assert client.get("/api/me", headers=token(client, "ro1")).json()["role"] == "statistician"


def test_deactivated_account_cannot_log_in(client, auth):
    client.patch("/api/users/stat1", json={"active": False, "reason": "left the study"}, headers=auth("admin"))
    assert client.post("/api/auth/token", json={"username": "stat1", "password": PASSWORD}).status_code == 401


def test_user_changes_are_audited(client, auth, app):
    admin = auth("admin")
    response = client.post("/api/users", headers=admin, json={"username": "Nurse.B", "password": "short",
                                                              "role": "nurse", "site": "09"})
    assert response.status_code == 422
    assert {v["field"] for v in response.json()["violations"]} == {"password", "role", "site"}
    response = client.post("/api/users", headers=admin, json={"username": "Nurse.B", "password": "long enough pw",
                                                              "role": "coordinator", "site": "01",
                                                              "full_name": "Beth Nurse"})
    assert response.status_code == 201 and response.json()["username"] == "nurse.b"
    client.patch("/api/users/nurse.b", json={"site": None, "reason": "covers both sites"}, headers=admin)
    client.post("/api/users/nurse.b/password", json={"password": "another long pw", "reason": "forgotten"},
                headers=admin)
    with Session(app.state.ctx.engine) as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.entity == "user",
                                                   AuditRecord.record_key == "nurse.b")).all()
    trail = [(r.action, r.field, r.old_value, r.new_value, r.username) for r in rows]
    assert ("create", "role", None, '"coordinator"', "admin1") in trail
    assert ("update", "site", '"01"', None, "admin1") in trail
    assert ("update", "password", '"(set)"', '"(changed)"', "admin1") in trail
    assert not any("long enough" in str(t) or "argon2" in str(t) for t in trail)  # never the password or hash
    # an administrator cannot demote or deactivate their own account
    response = client.patch("/api/users/admin1", json={"role": "read_only", "reason": "x"}, headers=admin)
    assert response.status_code == 422


def test_own_password_change(client):
    headers = token(client, "coord1")
    response = client.post("/api/auth/password", json={"old_password": "wrong", "new_password": "a new long pw"},
                           headers=headers)
    assert response.status_code == 401
    response = client.post("/api/auth/password", json={"old_password": PASSWORD, "new_password": "a new long pw"},
                           headers=headers)
    assert response.status_code == 204
    assert client.get("/api/subjects", headers=headers).status_code == 401  # old token revoked
    assert token(client, "coord1", "a new long pw")


def test_unexpected_errors_never_leak_a_stack_trace(app, auth, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals: /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as c:
        headers = token(c, "coord1")
        app.state.ctx.capture.get_form = boom
        response = c.get(ECHO, headers=headers)
        assert response.status_code == 500
        body = response.json()
        assert body["error"] == "internal_error" and "reference" in body["detail"]
        assert "Traceback" not in response.text and "secret internals" not in response.text
        page = c.get("/subjects/01-001/forms/SCR/echo")  # not logged in in the browser: redirect, no error
        assert "Traceback" not in page.text
    assert "secret internals" in caplog.text  # ... but it is in the server log


def test_security_headers(client):
    response = client.get("/login")
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
