"""The API's form-save path: the PUT response is the form as a GET reads it back (built from the save, not
re-read), concurrent saves share durable group transactions with the semantics of saves made one by one,
and the per-request token check reads without waiting for the SQLite writer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from regenheart.capture.errors import Conflict, ValidationFailed
from regenheart.capture.group_commit import GroupCommitter
from regenheart.capture.permissions import Actor
from regenheart.store.audit import verify_chain
from regenheart.store.reconcile import check_integrity
from regenheart.web import create_app

from .conftest import FAST_HASHER, TODAY

COORD = Actor("coord1", "coordinator", "01")
VITALS = {"sbp_mmhg": 120, "dbp_mmhg": 80, "heart_rate_bpm": 70, "temperature_c": 36.6}


def fake_scorer(instrument, items):
    """Scores that depend on the items (an independent stand-in for the instrument scoring)."""
    answered = [v for v in items.values() if isinstance(v, (int, float))]
    return {"answered": len(answered), "total": float(sum(answered)) if answered else None}, f"{instrument}-test-1"


@pytest.fixture
def scored_client(db_path, web_protocol):
    app = create_app(db_path, web_protocol, scorer=fake_scorer, today=lambda: TODAY, hasher=FAST_HASHER)
    with TestClient(app) as client:
        yield client


def _same_as_get(client, headers, path, put_body) -> None:
    got = client.get(path, headers=headers).json()
    assert set(put_body) == set(got) | {"changed", "warnings"}
    assert {k: v for k, v in put_body.items() if k not in ("changed", "warnings")} == got


def _kccq(protocol, answer_index: int) -> dict:
    """Every coded item of the KCCQ form answered with its n-th code (no wording: codes only)."""
    answers = {}
    for f in protocol.forms["kccq"].fields:
        codes = f.codes or ([c.code for c in protocol.codelists[f.codelist]] if f.codelist else None)
        if f.type == "code" and codes:
            answers[f.name] = codes[answer_index]
    return answers


def test_put_response_equals_the_form_read_back(client, auth):
    headers = auth("coordinator")
    path = "/api/subjects/01-002/forms/SCR/vital_signs"
    first = client.put(path, headers=headers, json={"data": VITALS, "version": 0}).json()  # SCR date known
    assert first["version"] == 1 and first["status"] == "complete" and first["visit_date"] == "2025-01-10"
    _same_as_get(client, headers, path, first)
    changed = client.put(path, headers=headers, json={"data": {"sbp_mmhg": 131, "temperature_c": 37.0},
                                                      "version": 1, "reason": "re-measured"}).json()
    assert changed["version"] == 2 and sorted(changed["changed"]) == ["sbp_mmhg", "temperature_c"]
    assert changed["data"]["sbp_mmhg"] == 131 and changed["data"]["dbp_mmhg"] == 80
    _same_as_get(client, headers, path, changed)
    same = client.put(path, headers=headers, json={"data": {"sbp_mmhg": 131}, "version": 2}).json()
    assert same["version"] == 2 and same["changed"] == []
    _same_as_get(client, headers, path, same)


def test_put_response_counts_open_queries_and_keeps_sdv_state(client, auth):
    headers = auth("coordinator")
    path = "/api/subjects/01-001/forms/SCR/echo"  # query Q1 open on lvef_pct (conftest)
    version = client.get(path, headers=headers).json()["version"]
    body = client.put(path, headers=headers, json={"data": {"lvef_pct": 28.0}, "version": version,
                                                   "reason": "corrected after query"}).json()
    assert body["open_queries"] == 1 and body["verified"] is False and body["locked"] is False
    _same_as_get(client, headers, path, body)


def test_put_response_carries_scores_as_stored(scored_client, web_protocol):
    client = scored_client
    response = client.post("/api/auth/token", json={"username": "coord1", "password": "correct horse battery"})
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    path = "/api/subjects/01-002/forms/SCR/kccq"
    first = client.put(path, headers=headers, json={"data": _kccq(web_protocol, 0), "version": 0})
    assert first.status_code == 200, first.text
    first = first.json()
    assert first["scoring_version"] == "kccq-test-1" and first["derived"]["answered"] > 0
    _same_as_get(client, headers, path, first)
    unchanged = client.put(path, headers=headers, json={"data": _kccq(web_protocol, 0), "version": 1}).json()
    assert unchanged["changed"] == [] and unchanged["derived"] == first["derived"]  # stored scores, not new ones
    _same_as_get(client, headers, path, unchanged)
    rescored = client.put(path, headers=headers, json={"data": _kccq(web_protocol, 1), "version": 1,
                                                       "reason": "transcription error"}).json()
    assert rescored["derived"]["total"] != first["derived"]["total"]
    _same_as_get(client, headers, path, rescored)


def test_concurrent_saves_share_transactions_and_behave_as_one_by_one(app):
    ctx = app.state.ctx
    committer = GroupCommitter(ctx.capture)
    for n in range(20):
        ctx.capture.screen_subject(COORD, f"01-{100 + n}", "01", "2025-01-10", "2025-01-09")
    start = threading.Barrier(24)

    def own(n: int):
        start.wait(timeout=30)
        return committer.run(lambda: ctx.capture.save_form(COORD, f"01-{100 + n}", "SCR", "vital_signs",
                                                           VITALS | {"sbp_mmhg": 100 + n}, visit_date="2025-01-10"))

    def race(i: int):
        start.wait(timeout=30)
        return committer.run(lambda: ctx.capture.save_form(COORD, "01-002", "SCR", "nyha", {"nyha_class": 2},
                                                           reason=f"racer {i}", expected_version=1))

    def refused():
        start.wait(timeout=30)
        return committer.run(lambda: ctx.capture.save_form(COORD, "01-003", "SCR", "vital_signs",
                                                           VITALS | {"sbp_mmhg": 900}, visit_date="2025-01-10"))

    with ThreadPoolExecutor(24) as pool:
        owns = [pool.submit(own, n) for n in range(20)]
        racers = [pool.submit(race, i) for i in range(3)]
        bad = pool.submit(refused)
        results = [f.result(timeout=60) for f in owns]
        race_outcomes = []
        for f in racers:
            try:
                race_outcomes.append(f.result(timeout=60).version)
            except Conflict:
                race_outcomes.append("conflict")
        with pytest.raises(ValidationFailed):
            bad.result(timeout=60)
    assert all(r.version == 1 and r.status == "complete" for r in results)
    assert sorted(race_outcomes, key=str) == [2, "conflict", "conflict"]  # exactly one racer wins version 1
    assert committer.calls == 24 and committer.batches < 24  # saves waiting together were committed together
    for n in range(20):  # every acknowledged save is stored
        assert ctx.capture.get_form(COORD, f"01-{100 + n}", "SCR", "vital_signs").data["sbp_mmhg"] == 100 + n
    assert ctx.capture.get_form(COORD, "01-003", "SCR", "vital_signs").version == 0  # the refused one wrote nothing
    assert verify_chain(ctx.engine).ok
    integrity = check_integrity(ctx.engine, ctx.protocol)
    assert integrity.ok, integrity.summary()


def test_a_call_failing_in_the_database_is_rolled_back_and_run_again_alone(app):
    ctx = app.state.ctx
    committer = GroupCommitter(ctx.capture)
    calls = []

    def fails_in_the_batch():
        calls.append(ctx.capture._local.work is not None)
        result = ctx.capture.save_form(COORD, "01-002", "SCR", "vital_signs", VITALS, visit_date="2025-01-10")
        if ctx.capture._local.work is not None:  # e.g. a deadlock victim: an error of the database, not a refusal
            ctx.capture._local.work.session.connection().execute(text("SELECT * FROM no_such_table"))
        return result

    assert committer.run(fails_in_the_batch).version == 1
    assert calls == [True, False]  # in the group transaction, then alone
    view = ctx.capture.get_form(COORD, "01-002", "SCR", "vital_signs")
    assert view.version == 1 and view.data["sbp_mmhg"] == 120  # saved once: the first attempt rolled back
    assert verify_chain(ctx.engine).ok


def test_a_failed_group_transaction_is_reported_to_every_caller_and_not_run_twice(app, monkeypatch):
    import regenheart.store.audit as audit_module

    ctx = app.state.ctx
    committer = GroupCommitter(ctx.capture)
    calls = []

    def save():
        calls.append(1)
        return ctx.capture.save_form(COORD, "01-002", "SCR", "vital_signs", VITALS, visit_date="2025-01-10")

    def cannot_commit(session):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit_module, "store_head", cannot_commit)
    with pytest.raises(RuntimeError, match="disk full"):
        committer.run(save)
    monkeypatch.undo()
    assert calls == [1]
    assert ctx.capture.get_form(COORD, "01-002", "SCR", "vital_signs").version == 0  # nothing stored
    assert verify_chain(ctx.engine).ok


def test_token_check_and_form_read_do_not_wait_for_the_sqlite_writer(client, auth, app):
    headers = auth("coordinator")
    engine = app.state.ctx.engine
    with engine.connect() as writer:  # BEGIN IMMEDIATE: holds SQLite's write lock until the rollback
        writer.execute(text("UPDATE study_meta SET value = value WHERE key = 'study'"))
        me = client.get("/api/me", headers=headers)
        form = client.get("/api/subjects/01-001/forms/SCR/echo", headers=headers)
        writer.rollback()
    assert me.status_code == 200 and me.json()["username"] == "coord1"
    assert form.status_code == 200, form.text
    body = form.json()
    assert body["version"] == 1 and body["visit_date"] == "2025-01-10" and body["open_queries"] == 1


def test_the_writer_survives_an_error_of_its_own_and_no_caller_waits_forever(app, monkeypatch):
    ctx = app.state.ctx
    committer = GroupCommitter(ctx.capture)
    original = GroupCommitter._run_batch

    def broken(self, batch):
        raise RuntimeError("bug in the writer")

    monkeypatch.setattr(GroupCommitter, "_run_batch", broken)
    with pytest.raises(RuntimeError, match="bug in the writer"):
        committer.submit(lambda: None).result(timeout=30)
    monkeypatch.setattr(GroupCommitter, "_run_batch", original)
    result = committer.submit(lambda: ctx.capture.save_form(COORD, "01-002", "SCR", "vital_signs", VITALS,
                                                            visit_date="2025-01-10")).result(timeout=30)
    assert result.version == 1


def test_a_call_whose_caller_gave_up_before_it_started_is_not_run(app):
    ctx = app.state.ctx
    committer = GroupCommitter(ctx.capture)
    release = threading.Event()
    first = committer.submit(lambda: release.wait(30))  # keeps the writer busy
    time.sleep(0.2)
    given_up = committer.submit(lambda: ctx.capture.save_form(COORD, "01-002", "SCR", "vital_signs", VITALS,
                                                              visit_date="2025-01-10"))
    assert given_up.cancel()  # e.g. the client disconnected while the save waited for its turn
    later = committer.submit(lambda: ctx.capture.get_form(COORD, "01-002", "SCR", "vital_signs").version)
    release.set()
    assert first.result(timeout=30) is True
    assert later.result(timeout=30) == 0  # the cancelled save never ran, and the writer went on
