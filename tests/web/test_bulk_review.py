"""Adverse-event workflow and review in bulk through the API: roles (monitors verify, data managers lock,
investigators sign), site restriction, the confirmation a bulk lock asks for, one password for a visit."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import text

from regenheart.store.audit import verify_chain
from regenheart.store.reconcile import reconcile

from .conftest import PASSWORD

S = "/api/subjects/01-001"
FEVER = {"term": "Fever", "category": "FEVER", "onset_date": "2025-01-26", "stop_date": "2025-01-27",
         "ctcae_grade": 1, "serious": "N", "related_product": "POSSIBLE", "related_procedure": "NOT",
         "outcome": "RECOVERED", "max_temperature_c": 38.4}


def add_ae(client, auth) -> None:
    response = client.post(f"{S}/adverse-events", json={"data": FEVER}, headers=auth("coordinator"))
    assert response.status_code == 201, response.text


def test_ae_query_sdv_lock_sign_roles_and_state(client, auth, app):
    add_ae(client, auth)
    mon, dm, inv, coord = auth("monitor"), auth("data_manager"), auth("investigator"), auth("coordinator")
    # query on an AE field: monitor opens, site answers, monitor closes
    assert client.post(f"{S}/adverse-events/1/queries", json={"field": "ctcae_grade", "text": "?"},
                       headers=coord).status_code == 403
    bad = client.post(f"{S}/adverse-events/1/queries", json={"field": "nope", "text": "?"}, headers=mon)
    assert bad.status_code == 422 and bad.json()["violations"][0]["field"] == "field"
    q = client.post(f"{S}/adverse-events/1/queries", json={"field": "ctcae_grade", "text": "Grade?"}, headers=mon)
    assert q.status_code == 201 and q.json()["adverse_event"] == 1 and q.json()["form"] == "AE1"
    seq = q.json()["seq"]
    assert client.post(f"{S}/adverse-events/1/lock", headers=dm).status_code == 409  # unresolved query
    assert client.post(f"{S}/queries/{seq}/answer", json={"text": "Grade 1 per chart."},
                       headers=coord).json()["status"] == "answered"
    assert client.post(f"{S}/queries/{seq}/close", headers=mon).json()["status"] == "closed"
    # SDV by monitors only
    assert client.post(f"{S}/adverse-events/1/verify", headers=dm).status_code == 403
    assert client.post(f"{S}/adverse-events/1/verify", json={"version": 3}, headers=mon).status_code == 409
    assert client.post(f"{S}/adverse-events/1/verify", json={"version": 1}, headers=mon).json()["verified"] is True
    # signature by investigators only, with the password
    assert client.post(f"{S}/adverse-events/1/sign", json={"password": PASSWORD}, headers=mon).status_code == 403
    assert client.post(f"{S}/adverse-events/1/sign", json={"password": "wrong"}, headers=inv).status_code == 401
    sig = client.post(f"{S}/adverse-events/1/sign", json={"password": PASSWORD, "meaning": "review"}, headers=inv)
    assert sig.status_code == 201 and sig.json()["full_name"] == "Dr Ivan Vestigator"
    assert sig.json()["meaning"].startswith("Review") and len(sig.json()["content_hash"]) == 64
    # a change un-verifies and un-signs
    updated = client.put(f"{S}/adverse-events/1", json={"data": {"ctcae_grade": 2}, "version": 1,
                                                         "reason": "re-graded"}, headers=coord).json()
    assert (updated["verified"], updated["signed"], updated["version"]) == (False, False, 2)
    history = client.get(f"{S}/adverse-events/1/signatures", headers=mon).json()
    assert len(history) == 1 and history[0]["current"] is False
    # lock by data managers only; a locked AE refuses changes (409) until unlocked with a reason
    assert client.post(f"{S}/adverse-events/1/lock", headers=mon).status_code == 403
    unverified = client.post(f"{S}/adverse-events/1/lock", headers=dm)  # changed after SDV: confirm first
    assert unverified.status_code == 409 and unverified.json()["error"] == "confirmation_required"
    assert unverified.json()["violations"][0]["rule"] == "unverified"
    assert client.post(f"{S}/adverse-events/1/lock", json={"confirm": True}, headers=dm).json()["locked"] is True
    refused = client.put(f"{S}/adverse-events/1", json={"data": {"ctcae_grade": 3}, "reason": "x"}, headers=coord)
    assert refused.status_code == 409 and "locked" in refused.json()["detail"]
    assert client.post(f"{S}/adverse-events/1/unlock", json={"reason": " "}, headers=dm).status_code == 422
    assert client.post(f"{S}/adverse-events/1/unlock", json={"reason": "late lab"}, headers=dm).json()["locked"] is False
    trail = client.get(f"{S}/audit", headers=mon).json()
    assert [r["action"] for r in trail if r["entity"] == "ae_state"] == [
        "verify", "sign", "unverify", "unsign", "lock", "unlock"]
    engine = app.state.ctx.engine
    assert verify_chain(engine).ok and reconcile(engine, app.state.ctx.protocol).ok


def test_ae_of_another_site_is_not_found(client, auth):
    add_ae(client, auth)
    assert client.put(f"{S}/adverse-events/1", json={"data": {"ctcae_grade": 2}, "reason": "x"},
                      headers=auth("coord2")).status_code == 404
    assert client.post(f"{S}/adverse-events/1/queries", json={"field": "term", "text": "?"},
                       headers=auth("coord2")).status_code == 403
    assert client.get(f"{S}/adverse-events/1/signatures", headers=auth("coord2")).status_code == 404


def test_sign_a_visit_once(client, auth, app):
    inv = auth("investigator")
    plan = client.get(f"{S}/visits/SCR/review", params={"action": "sign"}, headers=inv).json()
    items = [{"key": i["key"], "version": i["version"]} for i in plan["items"] if i["acts"]]
    assert {i["key"] for i in items} >= {"SCR/demographics", "SCR/echo", "SCR/nyha"}
    assert client.post(f"{S}/visits/SCR/sign", json={"password": PASSWORD}, headers=auth("monitor")).status_code == 403
    assert client.post(f"{S}/visits/SCR/sign", json={"password": "wrong", "items": items},
                       headers=inv).status_code == 401
    stale = items[:-1]
    assert client.post(f"{S}/visits/SCR/sign", json={"password": PASSWORD, "items": stale},
                       headers=inv).status_code == 409
    response = client.post(f"{S}/visits/SCR/sign", json={"password": PASSWORD, "items": items}, headers=inv)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [d["key"] for d in body["done"]] == [i["key"] for i in items]
    assert len(body["signatures"]) == len(items) and len({s["content_hash"] for s in body["signatures"]}) == len(items)
    for key in ("SCR/echo", "SCR/nyha"):
        assert client.get(f"{S}/forms/{key}", headers=inv).json()["signed"] is True
    with app.state.ctx.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM signatures")).scalar() == len(items)
    assert client.post(f"{S}/visits/SCR/sign", json={"password": PASSWORD}, headers=inv).status_code == 409


def test_bulk_lock_needs_confirmation_listing_forms(client, auth):
    dm, mon = auth("data_manager"), auth("monitor")
    client.put(f"{S}/forms/D0/vital_signs", json={"data": {"sbp_mmhg": 120}, "version": 0, "complete": False,
                                                  "visit_date": "2025-01-24"}, headers=auth("coordinator"))
    assert client.post(f"{S}/visits/D0/lock", headers=mon).status_code == 403
    asked = client.post(f"{S}/visits/D0/lock", headers=dm)
    assert asked.status_code == 409 and asked.json()["error"] == "confirmation_required"
    listed = {v["field"]: v["rule"] for v in asked.json()["violations"]}
    assert listed["D0/vital_signs"] == "incomplete" and listed["D0/catheterization"] == "unverified"
    assert client.get(f"{S}/forms/D0/catheterization", headers=dm).json()["locked"] is False
    done = client.post(f"{S}/visits/D0/lock", json={"confirm": True, "reason": "interim"}, headers=dm)
    assert done.status_code == 200 and {d["key"] for d in done.json()["done"]} == {"D0/vital_signs",
                                                                                   "D0/catheterization"}
    assert client.get(f"{S}/forms/D0/vital_signs", headers=dm).json()["locked"] is True
    # the casebook cell keeps the entry status under the lock
    cells = {c["form"]: c for v in client.get(S, headers=dm).json()["visits"] if v["visit"] == "D0"
             for c in v["forms"]}
    assert cells["vital_signs"]["status"] == "locked" and cells["vital_signs"]["entry"] == "incomplete"
    assert cells["catheterization"]["verified"] is False


def test_casebook_verify_and_lock_blocked_by_queries(client, auth):
    add_ae(client, auth)
    mon, dm = auth("monitor"), auth("data_manager")
    verified = client.post(f"{S}/casebook/verify", json={"comment": "visit 1"}, headers=mon)
    assert verified.status_code == 200
    keys = {d["key"] for d in verified.json()["done"]}
    assert {"AE1", "SCR/echo", "D0/catheterization"} <= keys
    blocked = client.post(f"{S}/casebook/lock", json={"confirm": True}, headers=dm)  # Q1 open on SCR/echo
    assert blocked.status_code == 409 and "SCR/echo" in blocked.json()["detail"]
    assert client.post(f"{S}/queries/1/close", headers=mon).status_code == 200
    locked = client.post(f"{S}/casebook/lock", json={"confirm": True}, headers=dm)
    assert locked.status_code == 200 and "AE1" in {d["key"] for d in locked.json()["done"]}
    assert client.get(f"{S}/adverse-events/1", headers=dm).json()["locked"] is True


def test_bulk_site_restriction_and_unknown_visit(client, auth):
    assert client.post("/api/subjects/02-001/visits/SCR/sign", json={"password": PASSWORD},
                       headers=auth("investigator")).status_code == 404
    assert client.get("/api/subjects/02-001/casebook/review", params={"action": "sign"},
                      headers=auth("investigator")).status_code == 404
    assert client.post(f"{S}/visits/NOPE/verify", headers=auth("monitor")).status_code == 404
    assert client.get(f"{S}/casebook/review", params={"action": "delete"},
                      headers=auth("monitor")).status_code == 422


# ---------------------------------------------------------------------------------------------- pages
def test_pages_list_forms_before_confirming_and_keep_entry_status_under_a_lock(app, client, auth):
    from .test_pages import csrf_of, login

    add_ae(client, auth)
    monitor = TestClient(app)
    assert login(monitor, "mon1").status_code == 303
    page = monitor.get("/subjects/01-001/visits/SCR/review/sign")
    assert page.status_code == 200 and "may not sign" in page.text and 'id="sign-password"' not in page.text
    # SCR nyha was locked (complete, never verified): the cell says so under the lock
    casebook = monitor.get("/subjects/01-001").text
    cell = re.search(r'<a class="cell st-locked"[^>]*data-form="nyha"[^>]*>(.*?)</a>', casebook, re.DOTALL)
    assert cell and 'data-entry="complete"' in casebook and "not verified" in cell.group(1)
    # the investigator's page lists every form with the version to be signed, as hidden inputs
    investigator = TestClient(app)
    assert login(investigator, "inv1").status_code == 303
    page = investigator.get("/subjects/01-001/casebook/review/sign").text
    listed = dict(re.findall(r'name="item:([^"]+)" value="(\d+)"', page))
    assert listed["AE1"] == "1" and listed["SCR/echo"] == "1" and "D0/catheterization" in listed
    # a stale list (the AE changed meanwhile) is refused and nothing is signed
    client.put(f"{S}/adverse-events/1", json={"data": {"ctcae_grade": 2}, "reason": "re-graded"},
               headers=auth("coordinator"))
    response = investigator.post("/subjects/01-001/casebook/review/sign", data={
        "csrf_token": csrf_of(page), "password": PASSWORD, "meaning": "approval",
        **{f"item:{k}": v for k, v in listed.items()}})
    assert response.status_code == 409 and "AE1 changed" in response.text
    assert client.get(f"{S}/forms/SCR/echo", headers=auth("investigator")).json()["signed"] is False
    # a locked AE page offers no edit form, only the review panel
    client.post(f"{S}/adverse-events/1/lock", json={"confirm": True}, headers=auth("data_manager"))
    coordinator = TestClient(app)
    assert login(coordinator, "coord1").status_code == 303
    html = coordinator.get("/subjects/01-001/adverse-events/1").text
    assert 'id="ae-form"' not in html and "locked by data management" in html and 'id="ae-review"' in html


def test_single_form_lock_button_asks_before_locking_an_unverified_form(app, client, auth):
    from .test_pages import login

    manager = TestClient(app)
    assert login(manager, "dm1").status_code == 303
    html = manager.get("/subjects/01-001/forms/SCR/echo").text
    assert "not source-data verified" in html and re.search(r'id="lock-confirm"\s+required', html)
    client.post(f"{S}/forms/SCR/demographics/verify", headers=auth("monitor"))
    html = manager.get("/subjects/01-001/forms/SCR/demographics").text
    assert 'id="lock"' in html and 'id="lock-confirm"' not in html  # complete and verified: no question


def test_single_ae_lock_page_asks_for_confirmation_when_not_verified(client, auth, app):
    from .test_admin_remaining import csrf_of, login

    add_ae(client, auth)
    manager = TestClient(app)
    assert login(manager, "dm1").status_code == 303
    url = "/subjects/01-001/adverse-events/1"
    page = manager.get(url).text
    assert 'id="ae-lock-confirm" required' in page and "not source-data verified" in page
    data = {"csrf_token": csrf_of(page), "version": "1"}
    refused = manager.post(f"{url}/lock", data=data)  # follows the redirect back to the AE page
    assert "Confirm to lock it anyway" in refused.text
    assert client.get(f"{S}/adverse-events/1", headers=auth("monitor")).json()["locked"] is False
    manager.post(f"{url}/lock", data=data | {"confirm": "true"})
    assert client.get(f"{S}/adverse-events/1", headers=auth("monitor")).json()["locked"] is True
