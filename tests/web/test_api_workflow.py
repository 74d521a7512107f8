"""Queries, source-data verification, lock/unlock and e-signatures through the API, plus the
adverse-event log. Each change must leave an audit record and keep the chain valid."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from regenheart.store.audit import verify_chain
from regenheart.store.models import AccessLog, AuditRecord

from .conftest import PASSWORD

FORM = "/api/subjects/01-001/forms/SCR"


def test_query_lifecycle(client, auth, app):
    mon, coord = auth("monitor"), auth("coordinator")
    q = client.post("/api/subjects/01-001/queries", headers=mon, json={
        "visit": "SCR", "form": "demographics", "field": "weight_kg", "text": "Weight differs from the chart?"})
    assert q.status_code == 201
    seq = q.json()["seq"]
    assert q.json()["status"] == "open" and q.json()["messages"][0]["text"] == "Weight differs from the chart?"
    form = client.get(f"{FORM}/demographics", headers=coord).json()
    assert form["open_queries"] == 1
    # answering needs text; a monitor cannot answer, a coordinator cannot close
    assert client.post(f"/api/subjects/01-001/queries/{seq}/answer", json={"text": " "},
                       headers=coord).status_code == 422
    assert client.post(f"/api/subjects/01-001/queries/{seq}/answer", json={"text": "x"},
                       headers=mon).status_code == 403
    answered = client.post(f"/api/subjects/01-001/queries/{seq}/answer", json={"text": "Chart says 82.5 kg."},
                           headers=coord).json()
    assert answered["status"] == "answered" and [m["kind"] for m in answered["messages"]] == ["open", "answer"]
    assert client.post(f"/api/subjects/01-001/queries/{seq}/close", headers=coord).status_code == 403
    reopened = client.post(f"/api/subjects/01-001/queries/{seq}/reopen", json={"text": "Please attach the scale."},
                           headers=mon).json()
    assert reopened["status"] == "open"
    client.post(f"/api/subjects/01-001/queries/{seq}/answer", json={"text": "Scale log attached."}, headers=coord)
    closed = client.post(f"/api/subjects/01-001/queries/{seq}/close", json={"text": "OK"}, headers=mon).json()
    assert closed["status"] == "closed" and closed["closed_by"] == "mon1"
    # a closed query cannot be answered
    response = client.post(f"/api/subjects/01-001/queries/{seq}/answer", json={"text": "late"}, headers=coord)
    assert response.status_code == 409 and response.json()["error"] == "invalid_state"
    # stale version
    assert client.post(f"/api/subjects/01-001/queries/{seq}/reopen", json={"text": "again", "version": 1},
                       headers=mon).status_code == 409
    rows = client.get("/api/subjects/01-001/audit", params={"form": "demographics", "field": "weight_kg"},
                      headers=mon).json()
    assert [r["action"] for r in rows if r["entity"] == "query"] == [
        "query_open", "query_answer", "query_reopen", "query_answer", "query_close"]
    assert verify_chain(app.state.ctx.engine).ok
    worklist = client.get("/api/queries", params={"status": "unresolved"}, headers=mon).json()
    assert [(x["subject_id"], x["seq"]) for x in worklist] == [("01-001", 1)]


def test_query_on_unknown_field_or_locked_form_is_refused(client, auth):
    mon = auth("monitor")
    response = client.post("/api/subjects/01-001/queries", headers=mon,
                           json={"visit": "SCR", "form": "echo", "field": "nope", "text": "?"})
    assert response.status_code == 422 and response.json()["violations"][0]["field"] == "field"
    response = client.post("/api/subjects/01-001/queries", headers=mon,
                           json={"visit": "SCR", "form": "nyha", "field": "nyha_class", "text": "?"})
    assert response.status_code == 409  # nyha is locked


def test_sdv_is_cleared_when_verified_data_change(client, auth):
    mon, coord = auth("monitor"), auth("coordinator")
    assert client.post(f"{FORM}/echo/verify", json={"version": 2}, headers=mon).status_code == 409  # stale
    response = client.post(f"{FORM}/echo/verify", json={"version": 1, "comment": "checked against report"},
                           headers=mon)
    assert response.status_code == 200 and response.json()["verified"] is True
    assert client.post(f"{FORM}/echo/verify", headers=mon).status_code == 409  # already verified
    cell = {f["form"]: f for f in client.get("/api/subjects/01-001", headers=coord).json()["visits"][0]["forms"]}
    assert cell["echo"]["status"] == "verified"
    client.put(f"{FORM}/echo", json={"data": {"lvef_pct": 28.0}, "version": 1, "reason": "re-read"}, headers=coord)
    assert client.get(f"{FORM}/echo", headers=coord).json()["verified"] is False
    rows = client.get("/api/subjects/01-001/audit", params={"form": "echo", "field": "verified"},
                      headers=mon).json()
    assert [(r["action"], r["old_value"], r["new_value"]) for r in rows] == [
        ("verify", False, True), ("unverify", True, False)]
    assert rows[0]["reason"] == "checked against report" and rows[0]["username"] == "mon1"


def test_incomplete_or_missing_forms_cannot_be_verified_or_signed(client, auth):
    coord = auth("coordinator")
    client.put(f"{FORM}/vital_signs", json={"data": {"sbp_mmhg": 120}, "version": 0, "complete": False},
               headers=coord)
    assert client.get(f"{FORM}/vital_signs", headers=coord).json()["status"] == "incomplete"
    assert client.post(f"{FORM}/vital_signs/verify", headers=auth("monitor")).status_code == 409
    assert client.post(f"{FORM}/vital_signs/sign", json={"password": PASSWORD},
                       headers=auth("investigator")).status_code == 409
    assert client.post(f"{FORM}/cardiac_ct/verify", headers=auth("monitor")).status_code == 409  # never entered


def test_lock_blocks_saves_until_unlocked_with_reason(client, auth):
    dm, coord = auth("data_manager"), auth("coordinator")
    response = client.put(f"{FORM}/nyha", json={"data": {"nyha_class": 2}, "version": 1, "reason": "x"},
                          headers=coord)
    assert response.status_code == 409 and "locked" in response.json()["detail"]
    assert client.post(f"{FORM}/nyha/unlock", json={"reason": " "}, headers=dm).status_code == 422
    assert client.post(f"{FORM}/nyha/unlock", json={"reason": "query from medical review"},
                       headers=dm).json()["locked"] is False
    assert client.put(f"{FORM}/nyha", json={"data": {"nyha_class": 2}, "version": 1, "reason": "corrected"},
                      headers=coord).status_code == 200
    # a form with an unresolved query cannot be locked
    response = client.post(f"{FORM}/echo/lock", headers=dm)
    assert response.status_code == 409 and "unresolved" in response.json()["detail"]
    client.post("/api/subjects/01-001/queries/1/close", json={"text": "fine"}, headers=dm)
    assert client.post(f"{FORM}/echo/lock", json={"reason": "interim analysis", "confirm": True},
                       headers=dm).json()["locked"]
    assert client.post(f"{FORM}/echo/lock", headers=dm).status_code == 409  # already locked


def test_signature_needs_password_and_records_name_time_meaning(client, auth, app):
    inv = auth("investigator")
    response = client.post(f"{FORM}/medical_history/sign", json={"password": "wrong", "meaning": "approval"},
                           headers=inv)
    assert response.status_code == 401
    response = client.post(f"{FORM}/medical_history/sign", json={"password": PASSWORD, "meaning": "whatever"},
                           headers=inv)
    assert response.status_code == 422 and response.json()["violations"][0]["field"] == "meaning"
    response = client.post(f"{FORM}/medical_history/sign", json={"password": PASSWORD, "meaning": "approval",
                                                                  "version": 1}, headers=inv)
    assert response.status_code == 201, response.text
    sig = response.json()
    assert sig["full_name"] == "Dr Ivan Vestigator" and sig["ts_utc"].endswith("Z")
    assert sig["meaning"].startswith("Approval") and sig["record_version"] == 1 and len(sig["content_hash"]) == 64
    assert client.get(f"{FORM}/medical_history", headers=inv).json()["signed"] is True
    assert client.post(f"{FORM}/medical_history/sign", json={"password": PASSWORD},
                       headers=inv).status_code == 409  # already signed
    # changing signed data removes the signature's effect; the signature row stays as history
    client.put(f"{FORM}/medical_history", json={"data": {"diabetes": "Y"}, "version": 1, "reason": "new lab"},
               headers=auth("coordinator"))
    assert client.get(f"{FORM}/medical_history", headers=inv).json()["signed"] is False
    history = client.get(f"{FORM}/medical_history/signatures", headers=inv).json()
    assert len(history) == 1 and history[0]["current"] is False
    with Session(app.state.ctx.engine) as s:
        failures = s.scalars(select(AccessLog).where(AccessLog.username == "inv1",
                                                     AccessLog.event == "login_failure")).all()
        sign_rows = s.scalars(select(AuditRecord).where(AuditRecord.action == "sign")).all()
    assert len(failures) == 1 and "signature" in failures[0].detail
    assert len(sign_rows) == 1 and "Dr Ivan Vestigator" in sign_rows[0].reason
    # signatures are append-only in the database
    with pytest.raises(DBAPIError, match="append-only"), app.state.ctx.engine.begin() as conn:
        conn.execute(text("UPDATE signatures SET full_name = 'someone else'"))


def test_adverse_events(client, auth):
    coord = auth("coordinator")
    bad = {"term": "Fever", "category": "FEVER", "onset_date": "2025-01-26", "stop_date": "2025-01-25",
           "ctcae_grade": 1, "serious": "Y", "related_product": "POSSIBLE", "related_procedure": "NOT",
           "outcome": "RECOVERED", "max_temperature_c": 37.5}
    response = client.post("/api/subjects/01-001/adverse-events", json={"data": bad}, headers=coord)
    assert response.status_code == 422
    assert {(v["field"], v["rule"]) for v in response.json()["violations"]} == {
        ("stop_date", "AE01"), ("serious", "AE02"), ("max_temperature_c", "AE04")}
    good = bad | {"stop_date": "2025-01-27", "serious": "N", "max_temperature_c": 38.4}
    ae = client.post("/api/subjects/01-001/adverse-events", json={"data": good}, headers=coord).json()
    assert ae["seq"] == 1 and ae["study_day"] == 2 and ae["version"] == 1
    assert client.put("/api/subjects/01-001/adverse-events/1", json={"data": {"ctcae_grade": 2}},
                      headers=coord).status_code == 422  # reason required
    assert client.put("/api/subjects/01-001/adverse-events/1", json={"data": {"ctcae_grade": 2}, "version": 7,
                                                                     "reason": "x"}, headers=coord).status_code == 409
    updated = client.put("/api/subjects/01-001/adverse-events/1", json={"data": {"ctcae_grade": 2}, "version": 1,
                                                                        "reason": "re-graded"}, headers=coord).json()
    assert updated["ctcae_grade"] == 2 and updated["version"] == 2
    assert len(client.get("/api/subjects/01-001/adverse-events", headers=auth("monitor")).json()) == 1


def test_visit_dates_and_window_warnings(client, auth):
    coord = auth("coordinator")
    response = client.put("/api/subjects/01-001/visits/M1", json={"visit_date": "2025-03-10"}, headers=coord)
    assert response.status_code == 200
    body = response.json()
    assert body["study_day"] == 45 and body["in_window"] is False and body["warnings"][0]["rule"] == "window"
    response = client.put("/api/subjects/01-001/visits/M1", json={"visit_date": "2025-02-24"}, headers=coord)
    assert response.status_code == 422 and response.json()["violations"][0]["rule"] == "reason_required"


def test_disposition(client, auth):
    coord = auth("coordinator")
    response = client.put("/api/subjects/01-001/disposition", json={"data": {"status": "WITHDRAWAL",
                                                                             "date": "2025-06-01"}}, headers=coord)
    assert response.status_code == 422 and response.json()["violations"][0]["rule"] == "DS01"
    response = client.put("/api/subjects/01-001/disposition", headers=coord, json={
        "data": {"status": "WITHDRAWAL", "date": "2025-06-01", "reason": "moved abroad"}})
    assert response.status_code == 200 and response.json()["status"] == "discontinued"
    assert response.json()["next_visit"] is None
