"""Adverse events as full records (queries, SDV, lock, signature) and review in bulk (a visit or a casebook
verified, locked or signed in one transaction), at the capture level."""

from __future__ import annotations

import json

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from regenheart.capture.accounts import AccountService, AuthenticationFailed
from regenheart.capture.errors import Conflict, NotFound, PermissionDenied, StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.workflow import ConfirmationRequired, WorkflowService, ae_content_hash, content_hash
from regenheart.store.audit import verify_chain
from regenheart.store.models import AdverseEventSignature, AuditRecord, FormRecord, Signature
from regenheart.store.reconcile import reconcile

from ..conftest import COORDINATOR, INVESTIGATOR, MONITOR
from .test_capture import enrol_and_infuse

PASSWORD = "correct horse battery"
DM = Actor("dm1", "data_manager")
FEVER = {"term": "Fever", "category": "FEVER", "onset_date": "2025-01-26", "stop_date": "2025-01-27",
         "ctcae_grade": 1, "serious": "N", "related_product": "POSSIBLE", "related_procedure": "NOT",
         "outcome": "RECOVERED", "max_temperature_c": 38.4}
SCR_FORMS = ["demographics", "medical_history", "eligibility", "nyha", "echo"]


@pytest.fixture
def study(engine, protocol, service):
    accounts = AccountService(engine, protocol, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    admin = Actor("setup", "admin")
    for name, role, site, full in (("inv1", "investigator", "01", "Dr Ivan Vestigator"),
                                   ("mon1", "monitor", None, "Mona Monitor"), ("dm1", "data_manager", None, "Dana")):
        accounts.create_user(admin, name, role, PASSWORD, site=site, full_name=full)
    enrol_and_infuse(service)
    service.record_adverse_event(COORDINATOR, "01-001", FEVER)
    return service, WorkflowService(engine, protocol, accounts)


def audit_rows(engine, **where):
    with Session(engine) as s:
        stmt = select(AuditRecord).order_by(AuditRecord.seq)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditRecord, name) == value)
        return s.scalars(stmt).all()


def snapshot(engine) -> tuple:
    """Everything a bulk action may change: form flags, AE flags, signatures and the audit trail length."""
    with engine.connect() as c:
        return (c.execute(text("SELECT id, verified, locked, signed, version FROM form_records ORDER BY id")).all(),
                c.execute(text("SELECT id, verified, locked, signed, version FROM adverse_events ORDER BY id")).all(),
                c.execute(text("SELECT count(*) FROM signatures")).scalar(),
                c.execute(text("SELECT count(*) FROM ae_signatures")).scalar(),
                c.execute(text("SELECT count(*) FROM audit_trail")).scalar())


# ------------------------------------------------------------------------------------------ AE as a full record
def test_ae_query_round_trip(study, engine):
    _, wf = study
    with pytest.raises(ValidationFailed) as bad:
        wf.open_ae_query(MONITOR, "01-001", 1, "no_such_field", "?")
    assert bad.value.violations[0].field == "field"
    with pytest.raises(PermissionDenied):
        wf.open_ae_query(COORDINATOR, "01-001", 1, "ctcae_grade", "grade?")
    with pytest.raises(NotFound):
        wf.open_ae_query(MONITOR, "01-001", 9, "ctcae_grade", "grade?")
    q = wf.open_ae_query(MONITOR, "01-001", 1, "ctcae_grade", "Grade 1 with 38.4 C: please confirm.")
    assert (q.ae_seq, q.visit_code, q.form_code, q.field, q.status) == (1, "ae", "AE1", "ctcae_grade", "open")
    answered = wf.answer_query(COORDINATOR, "01-001", q.seq, "Confirmed from the nursing chart.")
    assert answered.status == "answered" and answered.ae_seq == 1
    # the AE cannot be locked while its query is unresolved
    with pytest.raises(StateError, match="unresolved"):
        wf.lock_ae(DM, "01-001", 1)
    closed = wf.close_query(MONITOR, "01-001", q.seq, "OK")
    assert closed.status == "closed"
    listed = wf.list_queries(MONITOR, "01-001")
    assert [(x.seq, x.ae_seq) for x in listed] == [(q.seq, 1)]
    assert [r.action for r in audit_rows(engine, entity="query")] == ["query_open", "query_answer", "query_close"]
    with pytest.raises(ConfirmationRequired, match="not source-data verified") as excinfo:
        wf.lock_ae(DM, "01-001", 1)  # not verified: the data manager must confirm
    assert [(i.key, i.note) for i in excinfo.value.items] == [("AE1", "not source-data verified")]
    wf.lock_ae(DM, "01-001", 1, confirm=True)
    assert verify_chain(engine).ok


def test_verified_and_signed_ae_lose_both_when_changed(study, engine):
    service, wf = study
    with pytest.raises(PermissionDenied):
        wf.verify_ae(COORDINATOR, "01-001", 1)
    with pytest.raises(Conflict):
        wf.verify_ae(MONITOR, "01-001", 1, expected_version=2)
    assert wf.verify_ae(MONITOR, "01-001", 1, expected_version=1, comment="checked against chart") == 1
    with pytest.raises(StateError, match="already verified"):
        wf.verify_ae(MONITOR, "01-001", 1)
    with pytest.raises(AuthenticationFailed):
        wf.sign_ae(INVESTIGATOR, "01-001", 1, password="wrong")
    sig = wf.sign_ae(INVESTIGATOR, "01-001", 1, password=PASSWORD, meaning="approval", expected_version=1)
    stored = json.loads(FEVER_JSON(engine))
    assert sig.full_name == "Dr Ivan Vestigator" and sig.record_version == 1
    # the content hash covers exactly the data stored at that version (independent recomputation)
    assert sig.content_hash == ae_content_hash("01-001", 1, 1, stored)
    with pytest.raises(StateError, match="already signed"):
        wf.sign_ae(INVESTIGATOR, "01-001", 1, password=PASSWORD)
    service.update_adverse_event(COORDINATOR, "01-001", 1, {"ctcae_grade": 2}, reason="re-graded",
                                 expected_version=1)
    with Session(engine) as s:
        flags = s.execute(text("SELECT verified, signed, version FROM adverse_events")).one()
    assert tuple(flags) == (0, 0, 2)
    state = [(r.action, r.field, r.old_value, r.new_value) for r in audit_rows(engine, entity="ae_state")]
    assert state == [("verify", "verified", "false", "true"), ("sign", "signed", "false", "true"),
                     ("unverify", "verified", "true", "false"), ("unsign", "signed", "true", "false")]
    history = wf.ae_signatures(MONITOR, "01-001", 1)
    assert len(history) == 1 and history[0].current is False
    assert reconcile(engine).ok and verify_chain(engine).ok


def FEVER_JSON(engine) -> str:
    with engine.connect() as c:
        return c.execute(text("SELECT data FROM adverse_events WHERE ae_seq = 1")).scalar()


def test_locked_ae_refuses_changes_and_queries_until_unlocked(study, engine):
    service, wf = study
    with pytest.raises(PermissionDenied):
        wf.lock_ae(MONITOR, "01-001", 1)
    wf.lock_ae(DM, "01-001", 1, reason="database lock", confirm=True)
    before = snapshot(engine)
    with pytest.raises(StateError, match="locked"):
        service.update_adverse_event(COORDINATOR, "01-001", 1, {"ctcae_grade": 2}, reason="re-graded")
    with pytest.raises(StateError, match="locked"):
        wf.open_ae_query(MONITOR, "01-001", 1, "term", "?")
    assert snapshot(engine) == before
    with pytest.raises(ValidationFailed):
        wf.unlock_ae(DM, "01-001", 1, reason=" ")
    wf.unlock_ae(DM, "01-001", 1, reason="late lab result")
    assert service.update_adverse_event(COORDINATOR, "01-001", 1, {"ctcae_grade": 2}, reason="re-graded") == 2
    assert [(r.action, r.new_value, r.reason) for r in audit_rows(engine, entity="ae_state", field="locked")] == [
        ("lock", "true", "database lock"), ("unlock", "false", "late lab result")]
    assert reconcile(engine).ok


def test_ae_signatures_are_append_only(study, engine):
    _, wf = study
    sig = wf.sign_ae(INVESTIGATOR, "01-001", 1, password=PASSWORD)
    with Session(engine) as s:
        (row,) = s.scalars(select(AdverseEventSignature)).all()
    assert (row.content_hash, row.full_name, row.record_version) == (sig.content_hash, "Dr Ivan Vestigator", 1)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE ae_signatures SET full_name = 'someone else'"))


def test_tampered_ae_flag_is_named_by_reconcile(study, engine):
    _, wf = study
    wf.verify_ae(MONITOR, "01-001", 1)
    assert reconcile(engine).ok
    with engine.begin() as conn:
        conn.execute(text("UPDATE adverse_events SET verified = 0, locked = 1"))
    bad = {(m.table, m.field, m.stored, m.audited) for m in reconcile(engine).mismatches}
    assert bad == {("adverse_events", "verified", "false", "true"),
                   ("adverse_events", "locked", "true", "(no audit record)")}


# ------------------------------------------------------------------------------------------ review in bulk
def test_plan_lists_every_form_of_the_visit_and_what_happens(study):
    service, wf = study
    service.save_form(COORDINATOR, "01-001", "SCR", "vital_signs", {"sbp_mmhg": 120}, complete=False)
    plan = wf.review_plan(INVESTIGATOR, "01-001", "sign", "SCR")
    by_key = {i.key: i for i in plan.items}
    assert set(SCR_FORMS) <= {i.form for i in plan.todo}
    assert by_key["SCR/vital_signs"].acts is False and "incomplete" in by_key["SCR/vital_signs"].note
    casebook = wf.review_plan(INVESTIGATOR, "01-001", "sign")
    assert "AE1" in {i.key for i in casebook.todo} and "D0/catheterization" in {i.key for i in casebook.todo}
    with pytest.raises(NotFound):
        wf.review_plan(INVESTIGATOR, "01-001", "sign", "NOPE")
    with pytest.raises(ValidationFailed):
        wf.review_plan(INVESTIGATOR, "01-001", "delete", "SCR")


def test_sign_a_visit_with_one_password_one_signature_per_form(study, engine):
    _, wf = study
    plan = wf.review_plan(INVESTIGATOR, "01-001", "sign", "SCR")
    expected = {i.key: i.version for i in plan.todo}
    result = wf.sign_many(INVESTIGATOR, "01-001", "SCR", password=PASSWORD, meaning="responsibility",
                          expected=expected)
    assert [i.key for i in result.done] == list(expected)
    with Session(engine) as s:
        rows = s.execute(select(Signature, FormRecord).join(FormRecord, FormRecord.id == Signature.record_id)
                         .order_by(Signature.id)).all()
        for sig, record in rows:  # each form's own hash of its own data at its version
            data = {i.field: json.loads(i.value) if i.value is not None else None for i in record.items}
            assert sig.content_hash == content_hash("01-001", "SCR", record.form_code, record.version, data)
            assert record.signed and sig.meaning.startswith("Responsibility")
    assert len(rows) == len(expected) and len({sig.content_hash for sig, _ in rows}) == len(expected)
    assert len({sig.ts_utc for sig, _ in rows}) == 1  # one act of signing
    with engine.connect() as c:  # one password entry: one re-authentication in the access log
        assert c.execute(text("SELECT count(*) FROM access_log WHERE event = 'reauthenticated'")).scalar() == 1
    assert len(audit_rows(engine, action="sign")) == len(expected)
    with pytest.raises(StateError, match="nothing"):
        wf.sign_many(INVESTIGATOR, "01-001", "SCR", password=PASSWORD)
    assert verify_chain(engine).ok and reconcile(engine).ok


def test_bulk_sign_of_a_changed_list_changes_nothing(study, engine):
    service, wf = study
    plan = wf.review_plan(INVESTIGATOR, "01-001", "sign")
    expected = {i.key: i.version for i in plan.todo}
    service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": 28.0}, reason="re-read")  # version 2
    before = snapshot(engine)
    with pytest.raises(Conflict, match="SCR/echo"):
        wf.sign_many(INVESTIGATOR, "01-001", password=PASSWORD, expected=expected)
    assert snapshot(engine) == before


def test_bulk_failure_on_one_form_rolls_back_all(study, engine, monkeypatch):
    """A write that fails on the last item (here: the audit append) leaves every earlier item unchanged."""
    _, wf = study
    before = snapshot(engine)
    real = WorkflowService._flag
    calls = {"n": 0}

    def failing(self, session, actor, subject, record, name, new, action, reason):
        calls["n"] += 1
        if calls["n"] == 4:
            raise StateError("simulated failure on the 4th form")
        return real(self, session, actor, subject, record, name, new, action, reason)
    monkeypatch.setattr(WorkflowService, "_flag", failing)
    with pytest.raises(StateError, match="simulated"):
        wf.verify_many(MONITOR, "01-001", "SCR")
    assert calls["n"] == 4 and snapshot(engine) == before


def test_verify_many_by_monitor_only_and_skips_incomplete(study, engine):
    service, wf = study
    service.save_form(COORDINATOR, "01-001", "SCR", "vital_signs", {"sbp_mmhg": 120}, complete=False)
    with pytest.raises(PermissionDenied):
        wf.verify_many(DM, "01-001", "SCR")
    result = wf.verify_many(MONITOR, "01-001", comment="monitoring visit 1")
    keys = {i.key for i in result.done}
    assert "SCR/vital_signs" not in keys and {"SCR/echo", "AE1", "D0/catheterization"} <= keys
    assert all(r.reason == "monitoring visit 1" for r in audit_rows(engine, action="verify"))
    assert reconcile(engine).ok


def test_lock_many_asks_confirmation_listing_incomplete_and_unverified(study, engine):
    service, wf = study
    service.save_form(COORDINATOR, "01-001", "SCR", "vital_signs", {"sbp_mmhg": 120}, complete=False)
    wf.verify(MONITOR, "01-001", "SCR", "echo")
    before = snapshot(engine)
    with pytest.raises(ConfirmationRequired) as asked:
        wf.lock_many(DM, "01-001", "SCR")
    listed = {i.key: i.note for i in asked.value.items}
    assert listed["SCR/vital_signs"] == "incomplete"
    assert listed["SCR/demographics"] == "not source-data verified"
    assert "SCR/echo" not in listed  # complete and verified: nothing to warn about
    assert snapshot(engine) == before
    # an unresolved query blocks the bulk lock even when confirmed
    wf.open_query(MONITOR, "01-001", "SCR", "nyha", "nyha_class", "Class III?")
    with pytest.raises(StateError, match="unresolved queries.*SCR/nyha"):
        wf.lock_many(DM, "01-001", "SCR", confirm=True)
    assert snapshot(engine)[:4] == before[:4]
    wf.close_query(MONITOR, "01-001", 1, "ok")
    result = wf.lock_many(DM, "01-001", "SCR", confirm=True, reason="interim analysis")
    assert {i.key for i in result.done} == {f"SCR/{f}" for f in SCR_FORMS + ["vital_signs"]}
    with pytest.raises(StateError, match="locked"):
        service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": 29.0}, reason="x")
    assert verify_chain(engine).ok and reconcile(engine).ok


def test_bulk_respects_the_site(study):
    _, wf = study
    other_site = Actor("inv2", "investigator", "02")
    with pytest.raises(NotFound):
        wf.review_plan(other_site, "01-001", "sign", "SCR")
    with pytest.raises(NotFound):
        wf.sign_many(other_site, "01-001", "SCR", password=PASSWORD)

