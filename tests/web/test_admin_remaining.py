"""Issue 12's remaining administration items without a browser (API and TestClient pages): a soft-check warning
acknowledged over the API and no longer standing on the data-quality page, and locking one incomplete or
unverified form only with confirmation.

The web test study (tests/web/conftest.py): 01-001 infused, SCR forms complete and not verified, SCR nyha
locked, query Q1 open on SCR echo; 01-002 and 01-003 in screening; 02-001 at site 02.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
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


# ---------------------------------------------------------------------------------------------- item 1: sites
def test_sites_default_to_the_protocol_and_are_seeded_at_db_init(tmp_path, web_protocol):
    from regenheart.capture.sites import SiteService
    from regenheart.store.db import create_study_database

    engine = create_study_database(tmp_path / "new.db", {"study": "x"})
    service = SiteService(engine, web_protocol)
    assert [(s.code, s.active, s.version) for s in service.list_sites()] == [("01", True, 0), ("02", True, 0)]
    assert service.seed_from_protocol() == 2 and service.seed_from_protocol() == 0
    assert [(s.code, s.name, s.version) for s in service.list_sites()] == [
        ("01", web_protocol.study.sites[0].name, 1), ("02", "Second site", 1)]
    with Session(engine) as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.entity == "site")).all()
    assert {(r.username, r.action, r.record_key, r.field) for r in rows} == {
        ("system", "create", code, f) for code in ("01", "02") for f in ("name", "active")}
    assert verify_chain(engine).ok
    engine.dispose()


def test_admin_adds_renames_and_deactivates_sites_over_the_api(client, auth, engine):
    admin = auth("admin")
    assert [s["code"] for s in client.get("/api/sites", headers=auth("coordinator")).json()] == ["01", "02"]
    assert client.post("/api/sites", json={"code": "03", "name": "Almaty"}, headers=auth("data_manager")
                       ).status_code == 403
    bad = client.post("/api/sites", json={"code": "3", "name": " "}, headers=admin)
    assert bad.status_code == 422
    assert {(v["field"], v["rule"]) for v in bad.json()["violations"]} == {("code", "pattern"), ("name", "length")}
    assert "2 digits" in bad.json()["violations"][0]["message"]
    assert client.post("/api/sites", json={"code": "A-1", "name": "x"}, headers=admin).json()["violations"][0][
        "rule"] == "format"
    assert client.post("/api/sites", json={"code": "02", "name": "again"}, headers=admin).json()["violations"][0][
        "rule"] == "unique"
    added = client.post("/api/sites", json={"code": "03", "name": "Almaty  clinic", "reason": "new centre"},
                        headers=admin)
    assert added.status_code == 201 and added.json() == {"code": "03", "name": "Almaty clinic", "active": True,
                                                         "in_protocol": False, "version": 1}
    # screening at the new site (a site-03 code), an account assigned to it
    coord = auth("data_manager")
    screened = client.post("/api/subjects", json={"subject_code": "03-001", "site_code": "03",
                                                  "screening_date": "2025-02-01", "consent_date": "2025-02-01"},
                           headers=auth("admin"))
    assert screened.status_code == 201, screened.text
    user = client.post("/api/users", json={"username": "coord3", "password": "a long enough secret",
                                           "role": "coordinator", "site": "03"}, headers=admin)
    assert user.status_code == 201 and user.json()["site"] == "03"
    # rename needs a reason; deactivation stops screening and new accounts there
    assert client.patch("/api/sites/03", json={"name": "Almaty"}, headers=admin).status_code == 422
    assert client.patch("/api/sites/99", json={"active": False, "reason": "x"}, headers=admin).status_code == 404
    off = client.patch("/api/sites/03", json={"name": "Almaty", "active": False, "reason": "centre closed",
                                              "version": 1}, headers=admin)
    assert off.status_code == 200 and (off.json()["active"], off.json()["version"]) == (False, 2)
    assert client.patch("/api/sites/03", json={"active": True, "reason": "x", "version": 1},
                        headers=admin).status_code == 409  # stale version
    refused = client.post("/api/subjects", json={"subject_code": "03-002", "site_code": "03",
                                                 "screening_date": "2025-02-01", "consent_date": "2025-02-01"},
                          headers=coord)
    assert refused.status_code == 422 and refused.json()["violations"][0]["field"] == "site_code"
    assert "01, 02" in refused.json()["violations"][0]["message"]
    assert client.post("/api/users", json={"username": "coord4", "password": "a long enough secret",
                                           "role": "coordinator", "site": "03"}, headers=admin).status_code == 422
    # the account at the closed site keeps it when other details change
    kept = client.patch("/api/users/coord3", json={"full_name": "Cora Three", "site": "03", "reason": "name"},
                        headers=admin)
    assert kept.status_code == 200, kept.text
    # protocol sites can be deactivated too (stored on first change)
    assert client.patch("/api/sites/02", json={"active": False, "reason": "paused"}, headers=admin).json()[
        "in_protocol"] is True
    with Session(engine) as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.entity == "site", AuditRecord.username == "admin1")
                         .order_by(AuditRecord.seq)).all()
    assert [(r.action, r.record_key, r.field, r.old_value, r.new_value, r.reason) for r in rows] == [
        ("create", "03", "name", None, '"Almaty clinic"', "new centre"),
        ("create", "03", "active", None, "true", "new centre"),
        ("update", "03", "name", '"Almaty clinic"', '"Almaty"', "centre closed"),
        ("update", "03", "active", "true", "false", "centre closed"),
        ("update", "02", "active", "true", "false", "paused")]
    assert verify_chain(engine).ok and reconcile(engine).ok


def test_sites_page_adds_renames_and_deactivates(app, engine):
    admin = TestClient(app)
    assert login(admin, "admin1").status_code == 303
    page = admin.get("/admin/sites")
    assert page.status_code == 200 and 'id="site-01"' in page.text and "2 digits" in page.text
    token = csrf_of(page.text)
    bad = admin.post("/admin/sites", data={"csrf_token": token, "code": "7", "name": "Seven"},
                     follow_redirects=False)
    assert bad.status_code == 422 and "must be 2 digits" in bad.text and "(entered: 7)" in bad.text
    done = admin.post("/admin/sites", data={"csrf_token": token, "code": "07", "name": "Seven"},
                      follow_redirects=False)
    assert done.status_code == 303
    page = admin.get("/admin/sites").text
    assert 'id="site-07"' in page and "Site 07 (Seven) added." in page
    no_reason = admin.post("/admin/sites/07", data={"csrf_token": token, "name": "Seven", "active": "0",
                                                    "reason": ""}, follow_redirects=False)
    assert no_reason.status_code == 422 and "a reason is required" in no_reason.text
    off = admin.post("/admin/sites/07", data={"csrf_token": token, "name": "Site Seven", "active": "0",
                                              "reason": "closed", "version": "1"}, follow_redirects=False)
    assert off.status_code == 303
    page = admin.get("/admin/sites").text
    row = page[page.index('id="site-07"'):].split("</tr>")[0]
    assert "Site Seven" in row and ">inactive<" in row
    # the users page offers active sites only for new accounts, and lists all with their status
    users = admin.get("/admin/users").text
    new_account = users[users.index('id="nu-site"'):].split("</select>")[0]
    assert 'value="07"' not in new_account and 'value="02"' in new_account
    assert "<td>07</td><td>Site Seven</td><td>inactive</td><td>0</td>" in users
    # the dashboard and data-quality filters list the database's sites
    assert 'value="07"' in admin.get("/data-quality").text
    # the screening form offers active sites only; the subject list's filter lists all
    coord = TestClient(app)
    login(coord, "dm1")
    subjects = coord.get("/subjects").text
    assert 'value="07"' not in subjects[subjects.index('id="site_code"'):].split("</select>")[0]
    # not for other roles
    other = TestClient(app)
    login(other, "dm1")
    assert other.get("/admin/sites").status_code == 403
    assert other.post("/admin/sites", data={"csrf_token": csrf_of(other.get("/subjects").text), "code": "08",
                                            "name": "x"}).status_code == 403


# ---------------------------------------------------------------------------------------------- item 2: subject code
@pytest.fixture
def wrong_code(client, auth):
    """Subject '1-38' at site 01, screened before the subject-code rule was stated (a protocol without the rule),
    with screening data entered: the state of a wrongly registered subject."""
    from regenheart.capture.service import CaptureService
    from regenheart.web.app import create_app  # noqa: F401  (same app factory as the fixtures)

    app = client.app
    ctx = app.state.ctx
    loose = ctx.protocol.model_copy(update={"study": ctx.protocol.study.model_copy(update={"subject_code": None})})
    capture = CaptureService(ctx.engine, loose, scorer=ctx.capture.scorer, today=ctx.today)
    coord = Actor("coord1", "coordinator", "01")
    from ..conftest import eligible_screening_data

    capture.screen_subject(coord, "1-38", "01", "2025-01-10", "2025-01-09")
    for form, data in eligible_screening_data().items():
        capture.save_form(coord, "1-38", "SCR", form, data, visit_date="2025-01-10")
    capture.record_adverse_event(coord, "1-38", {
        "term": "Fever", "category": "FEVER", "onset_date": "2025-01-10", "ctcae_grade": 1, "serious": "N",
        "related_product": "NOT", "related_procedure": "NOT", "outcome": "RECOVERED", "max_temperature_c": 38.1})
    # an acknowledged warning under the old code
    client.put("/api/subjects/1-38/forms/SCR/echo", headers=auth("coordinator"),
               json={"data": {"lvef_pct": 40.0}, "version": 1, "reason": "re-read"})
    assert client.post("/api/subjects/1-38/forms/SCR/echo/warnings/ECHO03/acknowledge", json={"reason": "ok"},
                       headers=auth("coordinator")).status_code == 200
    return "1-38"


def test_a_wrongly_screened_code_is_corrected_over_the_api(client, auth, engine, web_protocol, wrong_code):
    dm = auth("data_manager")
    url = f"/api/subjects/{wrong_code}/subject-code"
    assert client.post(url, json={"subject_code": "01-038", "reason": "typo"}, headers=auth("coordinator")
                       ).status_code == 403
    assert client.post(url, json={"subject_code": "01-038", "reason": "typo"}, headers=auth("monitor")
                       ).status_code == 403
    cases = {("1-38", "typo"): "unchanged", ("01-38", "typo"): "pattern", ("02-038", "typo"): "pattern",
             ("01-001", "typo"): "unique", ("01 038", "typo"): "format", ("01-038", " "): "reason_required"}
    for (code, reason), rule in cases.items():
        response = client.post(url, json={"subject_code": code, "reason": reason}, headers=dm)
        assert response.status_code == 422, (code, response.text)
        assert rule in {v["rule"] for v in response.json()["violations"]}, (code, response.json())
    done = client.post(url, json={"subject_code": "01-038", "reason": "entered 1-38 for 01-038 at screening"},
                       headers=dm)
    assert done.status_code == 200, done.text
    assert done.json()["subject_id"] == "01-038" and done.json()["status"] == "screening"
    assert client.get("/api/subjects/1-38", headers=dm).status_code == 404
    # data, AE and acknowledgement follow the subject; the audit trail keeps the history under the old code
    assert client.get("/api/subjects/01-038/forms/SCR/echo", headers=dm).json()["data"]["lvef_pct"] == 40.0
    assert [a["term"] for a in client.get("/api/subjects/01-038/adverse-events", headers=dm).json()] == ["Fever"]
    trail = client.get("/api/subjects/01-038/audit", headers=dm).json()
    assert trail[0]["record"] == "1-38" and trail[0]["field"] == "site_code"
    correction = trail[-1]
    assert (correction["action"], correction["entity"], correction["field"], correction["old_value"],
            correction["new_value"], correction["reason"], correction["username"]) == (
        "correct", "subject", "subject_code", "1-38", "01-038", "entered 1-38 for 01-038 at screening", "dm1")
    with Session(engine) as s:
        old_rows = s.scalar(select(func.count()).select_from(AuditRecord).where(AuditRecord.subject_code == "1-38"))
    assert old_rows > 40  # never rewritten
    kinds = {f.kind for f in dash.data_quality(engine, web_protocol, DM, TODAY) if f.subject_id == "01-038"}
    assert "soft_check_acknowledged" in kinds and "soft_check" not in kinds
    report = reconcile(engine, web_protocol)
    assert report.ok, report.mismatches[:5]
    assert verify_chain(engine).ok
    # the ODM export carries the subject's whole history (written under the old code) under the new code
    from regenheart.exchange.odm_write import build_odm

    tree = build_odm(engine, web_protocol)
    ns = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
    keys = [e.get("SubjectKey") for e in tree.getroot().iterfind(".//odm:SubjectData", ns)]
    assert "01-038" in keys and "1-38" not in keys
    # once the subject has left screening (here: withdrawn as a screen failure) the code is final
    client.app.state.ctx.capture.withdraw_screen_failure(Actor("coord1", "coordinator", "01"), "01-038",
                                                         "not going on")
    late = client.post("/api/subjects/01-038/subject-code", json={"subject_code": "01-039", "reason": "x"},
                       headers=dm)
    assert late.status_code == 409 and "in screening" in late.json()["detail"]


def test_code_correction_refused_with_locked_forms_or_later_visits(client, auth, wrong_code):
    dm = auth("data_manager")
    client.post(f"/api/subjects/{wrong_code}/forms/SCR/nyha/lock", json={"confirm": True}, headers=dm)
    locked = client.post(f"/api/subjects/{wrong_code}/subject-code", json={"subject_code": "01-038", "reason": "x"},
                         headers=dm)
    assert locked.status_code == 409 and "SCR/nyha" in locked.json()["detail"]
    # another site's coordinator or data manager restricted to a site does not see it
    assert client.post(f"/api/subjects/{wrong_code}/subject-code", json={"subject_code": "01-038", "reason": "x"},
                       headers=auth("coord2")).status_code == 403


def test_code_correction_page(app, client, auth, engine, web_protocol, wrong_code):
    manager = TestClient(app)
    login(manager, "dm1")
    page = manager.get(f"/subjects/{wrong_code}").text
    assert 'id="subject-code-form"' in page and "^{site}-\\d{3}$" in page
    token = csrf_of(page)
    bad = manager.post(f"/subjects/{wrong_code}/subject-code",
                       data={"csrf_token": token, "new_subject_code": "01-38", "code_reason": "typo"},
                       follow_redirects=False)
    assert bad.status_code == 422 and "does not follow the protocol" in bad.text and "(entered: 01-38)" in bad.text
    done = manager.post(f"/subjects/{wrong_code}/subject-code",
                        data={"csrf_token": token, "new_subject_code": "01-038", "code_reason": "typo at screening"},
                        follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/subjects/01-038"
    page = manager.get("/subjects/01-038").text
    assert "Subject code corrected: 1-38 is now 01-038" in page
    audit = manager.get("/subjects/01-038/audit?field=subject_code").text
    assert "typo at screening" in audit
    everything = manager.get("/subjects/01-038/audit.csv").text
    assert "1-38/SCR/echo" in everything  # the history under the old code is on the subject's trail
    coord = TestClient(app)
    login(coord, "coord1")
    assert 'id="subject-code-form"' not in coord.get("/subjects/01-038").text
    assert reconcile(engine, web_protocol).ok


def test_code_history_maps_records_to_the_subject_they_were_written_for():
    from regenheart.store.reconcile import CodeChange, CodeHistory

    # seq 50: A -> B; seq 70: B -> C; seq 80: a new subject takes the freed code A; seq 90: X -> A is refused
    # by uniqueness in practice, so codes in use are never the target of a change
    history = CodeHistory([CodeChange(50, "A", "B"), CodeChange(70, "B", "C")])
    assert history.current("A", 10) == "C" and history.current("B", 60) == "C" and history.current("A", 80) == "A"
    assert history.rekey("A/SCR/echo", 10) == "C/SCR/echo" and history.rekey("A/AE1", 90) == "A/AE1"
    assert history.segments("C") == [("C", 70, None), ("B", 50, 70), ("A", 0, 50)]
    assert history.segments("A") == [("A", 51, None)]  # the new holder of A: nothing before the code was freed
    assert not CodeHistory([])


def test_db_init_seeds_the_protocol_sites(tmp_path):
    from typer.testing import CliRunner

    from regenheart.cli.main import app as cli
    from regenheart.protocol import load_protocol
    from regenheart.store.models import Site

    db = tmp_path / "init.db"
    result = CliRunner().invoke(cli, ["db", "init", "--db", str(db)])
    assert result.exit_code == 0, result.output
    engine = open_study_database(db)
    with Session(engine) as s:
        stored = [(site.code, site.name, site.active) for site in s.scalars(select(Site))]
    assert stored == [(site.code, site.name, True) for site in load_protocol().study.sites]
    assert verify_chain(engine).ok
    engine.dispose()


def test_code_correction_refused_after_a_later_visit(client, auth, engine, wrong_code):
    # a visit after screening (written directly: the capture path allows none before enrolment)
    from regenheart.store.models import Subject, Visit

    with Session(engine) as s, s.begin():
        subject = s.scalars(select(Subject).where(Subject.subject_code == wrong_code)).one()
        s.add(Visit(subject_id=subject.id, visit_code="M1", visit_date=TODAY, study_day=None, in_window=None))
    refused = client.post(f"/api/subjects/{wrong_code}/subject-code", json={"subject_code": "01-038", "reason": "x"},
                          headers=auth("data_manager"))
    assert refused.status_code == 409 and "visits after SCR (M1)" in refused.json()["detail"]
