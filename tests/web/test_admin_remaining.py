"""Issue 12's remaining administration items without a browser (API and TestClient pages): a soft-check warning
acknowledged over the API and no longer standing on the data-quality page, and locking one incomplete or
unverified form only with confirmation.

The web test study (tests/web/conftest.py): 01-001 infused, SCR forms complete and not verified, SCR nyha
locked, query Q1 open on SCR echo; 01-002 and 01-003 in screening; 02-001 at site 02.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from regenheart.capture.permissions import Actor
from regenheart.store.audit import verify_chain
from regenheart.store.db import open_study_database
from regenheart.store.models import AuditRecord
from regenheart.store.reconcile import reconcile
from regenheart.web import dashboard as dash

from .conftest import TODAY
from .test_pages import csrf_of, login

DM = Actor("dm1", "data_manager")
S2 = "/api/subjects/01-002"
ACK = f"{S2}/forms/SCR/echo/warnings/ECHO03/acknowledge"


@pytest.fixture
def engine(db_path):
    engine = open_study_database(db_path)
    yield engine
    engine.dispose()


def _echo_warning(client: TestClient, headers: dict[str, str], lvef: float = 40.0, version: int = 1) -> None:
    """LVEF 40 % against volumes 250/182 ml (EF 100*(250-182)/250 = 27.2 %): ECHO03 warns (|40 - 27.2| > 10)."""
    response = client.put(f"{S2}/forms/SCR/echo", headers=headers,
                          json={"data": {"lvef_pct": lvef}, "version": version, "reason": "re-read"})
    assert response.status_code == 200, response.text
    assert [w["rule"] for w in response.json()["warnings"]] == ["ECHO03"]


# ---------------------------------------------------------------------------------------------- item 4: API
def test_acknowledge_a_soft_check_warning_over_the_api(client, auth, engine):
    coord = auth("coordinator")
    _echo_warning(client, coord)
    refused = client.post(ACK, json={"reason": "  "}, headers=coord)
    assert refused.status_code == 422 and refused.json()["violations"][0]["rule"] == "reason_required"
    assert client.post(ACK, json={}, headers=coord).status_code == 422  # reason missing altogether
    unknown = client.post(f"{S2}/forms/SCR/echo/warnings/NOPE/acknowledge", json={"reason": "x"}, headers=coord)
    assert unknown.status_code == 404 and "NOPE" in unknown.json()["detail"]
    # ECHO01 is an error-severity check (or none): only warnings are acknowledged
    not_warning = client.post(f"{S2}/forms/SCR/nyha/warnings/ECHO03/acknowledge", json={"reason": "x"},
                              headers=coord)
    assert not_warning.status_code == 404
    # a monitor never changes clinical data; another site's coordinator does not see the subject
    assert client.post(ACK, json={"reason": "x"}, headers=auth("monitor")).status_code == 403
    assert client.post(ACK, json={"reason": "x"}, headers=auth("coord2")).status_code == 404
    done = client.post(ACK, json={"reason": " confirmed with the echo lab "}, headers=coord)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["acknowledged"], body["reason"], body["form"], body["version"]) == (
        "ECHO03", "confirmed with the echo lab", "echo", 2)
    with Session(engine) as s:
        [ack] = s.scalars(select(AuditRecord).where(AuditRecord.entity == "soft_check")).all()
    assert (ack.username, ack.action, ack.subject_code, ack.record_key, ack.field, ack.new_value, ack.reason) == (
        "coord1", "acknowledge", "01-002", "01-002/SCR/echo", "ECHO03", "40.0", "confirmed with the echo lab")
    # nothing left to acknowledge on a value that does not warn: 409
    client.put(f"{S2}/forms/SCR/echo", headers=coord, json={"data": {"lvef_pct": 28.0}, "version": 2,
                                                            "reason": "typo"})
    stale = client.post(ACK, json={"reason": "again"}, headers=coord)
    assert stale.status_code == 409 and "does not raise a warning" in stale.json()["detail"]
    assert verify_chain(engine).ok and reconcile(engine).ok


def test_acknowledge_is_declared_in_openapi(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/subjects/{subject_id}/forms/{visit}/{form}/warnings/{check_id}/acknowledge"]["post"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(operation["responses"])
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert spec["components"]["schemas"][body]["required"] == ["reason"]
    lock = spec["paths"]["/api/subjects/{subject_id}/forms/{visit}/{form}/lock"]["post"]
    schema = lock["requestBody"]["content"]["application/json"]["schema"]
    ref = next(s["$ref"] for s in schema.get("anyOf", [schema]) if "$ref" in s).rsplit("/", 1)[1]
    assert "confirm" in spec["components"]["schemas"][ref]["properties"]


# ---------------------------------------------------------------------------------------------- item 3: data quality
def test_acknowledged_warnings_are_listed_apart_not_as_standing(client, auth, engine, web_protocol):
    coord = auth("coordinator")
    _echo_warning(client, coord)

    def kinds() -> list[tuple[str, str, str]]:
        return [(f.kind, f.subject_id, f.rule) for f in dash.data_quality(engine, web_protocol, DM, TODAY)
                if f.kind.startswith("soft_check")]
    assert kinds() == [("soft_check", "01-002", "ECHO03")]
    assert client.post(ACK, json={"reason": "confirmed with the echo lab"}, headers=coord).status_code == 200
    assert kinds() == [("soft_check_acknowledged", "01-002", "ECHO03")]
    [finding] = dash.data_quality(engine, web_protocol, DM, TODAY, kind="soft_check_acknowledged")
    assert "acknowledged by coord1" in finding.message and "confirmed with the echo lab" in finding.message
    assert dash.data_quality(engine, web_protocol, DM, TODAY, kind="soft_check") == []
    # the page: the standing-warning card says 0, the acknowledged one 1, and the row is marked as such
    login(client, "mon1")
    html = client.get("/data-quality").text
    assert 'data-kind="soft_check"' in html and 'data-kind="soft_check_acknowledged"' in html
    table = html.split('id="dq-table"')[1]
    assert 'data-kind="soft_check"' not in table and 'data-kind="soft_check_acknowledged"' in table
    standing = client.get("/data-quality?kind=soft_check").text
    assert "Nothing to report" in standing
    # a new value brings the warning back as standing: the acknowledgement covered 40.0 only
    _echo_warning(client, coord, lvef=41.0, version=2)
    assert kinds() == [("soft_check", "01-002", "ECHO03")]


# ---------------------------------------------------------------------------------------------- item 5: single lock
def test_locking_one_unverified_or_incomplete_form_needs_confirmation(client, auth, engine):
    dm, coord = auth("data_manager"), auth("coordinator")
    form = "/api/subjects/01-001/forms/SCR/demographics"
    asked = client.post(f"{form}/lock", json={"reason": "interim"}, headers=dm)
    assert asked.status_code == 409, asked.text
    body = asked.json()
    assert body["error"] == "confirmation_required" and "not source-data verified" in body["detail"]
    assert [(v["field"], v["value"], v["rule"]) for v in body["violations"]] == [
        ("SCR/demographics", "complete", "unverified")]
    assert client.get(form, headers=dm).json()["locked"] is False  # nothing written
    assert client.post(f"{form}/lock", json={"confirm": True}, headers=dm).json()["locked"] is True
    # verified and complete: no question asked
    assert client.post("/api/subjects/01-001/forms/SCR/medical_history/verify", headers=auth("monitor")).status_code == 200
    assert client.post("/api/subjects/01-001/forms/SCR/medical_history/lock", headers=dm).json()["locked"] is True
    # an incomplete draft
    draft = client.put("/api/subjects/01-003/forms/SCR/vital_signs", headers=coord,
                       json={"data": {"sbp_mmhg": 120}, "version": 0, "complete": False, "visit_date": "2025-01-10"})
    assert draft.status_code == 200 and draft.json()["status"] == "incomplete", draft.text
    incomplete = client.post("/api/subjects/01-003/forms/SCR/vital_signs/lock", headers=dm)
    assert incomplete.status_code == 409 and incomplete.json()["violations"][0]["rule"] == "incomplete"
    # unresolved queries still block even with confirmation
    blocked = client.post("/api/subjects/01-001/forms/SCR/echo/lock", json={"confirm": True}, headers=dm)
    assert blocked.status_code == 409 and "unresolved" in blocked.json()["detail"]
    assert verify_chain(engine).ok and reconcile(engine).ok


def test_single_form_lock_page_refuses_without_the_confirmation_box(app):
    manager = TestClient(app)
    assert login(manager, "dm1").status_code == 303
    url = "/subjects/01-001/forms/SCR/demographics"
    page = manager.get(url).text
    assert 'name="confirm" value="true" id="lock-confirm" required' in page
    data = {"csrf_token": csrf_of(page), "version": "1"}
    refused = manager.post(f"{url}/lock", data=data, follow_redirects=False)
    assert refused.status_code == 409 and "Confirm to lock it anyway" in refused.text
    assert "locked by data management" not in manager.get(url).text
    done = manager.post(f"{url}/lock", data=data | {"confirm": "true"}, follow_redirects=False)
    assert done.status_code == 303
    assert "locked by data management" in manager.get(url).text
