"""Capture service: validation with every violation listed, nothing written on refusal, audit of
every change with old -> new and reason, eligibility, windows, optimistic versions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from regenheart.capture.errors import Conflict, NotFound, PermissionDenied, StateError, ValidationFailed
from regenheart.store.audit import verify_chain
from regenheart.store.models import AuditRecord, FormRecord, ItemValue, Subject

from ..conftest import COORDINATOR, INVESTIGATOR, MONITOR, eligible_screening_data


def counts(engine):
    with Session(engine) as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Subject, FormRecord, ItemValue, AuditRecord))


def screen(service, code="01-001"):
    service.screen_subject(COORDINATOR, code, "01", "2025-01-10", "2025-01-09")
    for form, data in eligible_screening_data().items():
        service.save_form(COORDINATOR, code, "SCR", form, data, visit_date="2025-01-10")


def enrol_and_infuse(service, code="01-001"):
    screen(service, code)
    assert service.evaluate_eligibility(INVESTIGATOR, code).eligible
    service.enrol(INVESTIGATOR, code, "2025-01-20")
    service.save_form(COORDINATOR, code, "D0", "catheterization", {
        "access_site": "RADIAL", "vessel": "LMCA", "timi_before": 3, "timi_after": 3, "dose_cells_1e6": 10,
        "infusion_completed": "Y", "infusion_duration_min": 15}, visit_date="2025-01-24")


def test_invalid_form_lists_every_violation_and_writes_nothing(service, engine):
    service.screen_subject(COORDINATOR, "01-001", "01", "2025-01-10", "2025-01-09")
    before = counts(engine)
    bad = {"modality": "MRI", "lvef_pct": 95, "lvedv_ml": 150, "lvesv_ml": 200, "lvedd_mm": "abc",
           "lvesd_mm": 50, "ivsd_mm": 9.55, "bogus": 1}
    with pytest.raises(ValidationFailed) as info:
        service.save_form(COORDINATOR, "01-001", "SCR", "echo", bad, visit_date="2025-01-10")
    found = {(v.field, v.rule) for v in info.value.violations}
    assert found == {("modality", "codelist"), ("lvef_pct", "range"), ("lvedd_mm", "type"),
                     ("ivsd_mm", "decimals"), ("bogus", "unknown_field"), ("lvpwd_mm", "required"),
                     ("lvesv_ml", "ECHO01")}
    lvef = next(v for v in info.value.violations if v.field == "lvef_pct")
    assert lvef.value == 95 and "between 5 and 80 %" in lvef.message
    assert counts(engine) == before  # the visit date was not written either


def test_cross_field_rule_lvesd_below_lvedd(service):
    service.screen_subject(COORDINATOR, "01-001", "01", "2025-01-10", "2025-01-09")
    data = dict(eligible_screening_data()["echo"], lvesd_mm=70)
    with pytest.raises(ValidationFailed) as info:
        service.save_form(COORDINATOR, "01-001", "SCR", "echo", data, visit_date="2025-01-10")
    assert [(v.field, v.rule) for v in info.value.violations] == [("lvesd_mm", "ECHO02")]


def test_audit_of_first_entry_and_change_with_reason(service, engine):
    screen(service)
    view = service.get_form(COORDINATOR, "01-001", "SCR", "echo")
    assert view.version == 1 and view.status == "complete" and view.data["lvef_pct"] == 27.0
    with pytest.raises(ValidationFailed) as info:
        service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": 28.5})
    assert [(v.field, v.rule) for v in info.value.violations] == [("reason", "reason_required")]
    result = service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": 28.5},
                               reason="transcription error", expected_version=1)
    assert result.version == 2 and result.changed == ["lvef_pct"]
    with Session(engine) as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.form_code == "echo",
                                                   AuditRecord.field == "lvef_pct")).all()
    assert [(r.action, r.old_value, r.new_value, r.reason) for r in rows] == [
        ("create", None, "27.0", None), ("update", "27.0", "28.5", "transcription error")]
    assert rows[1].username == "coord1" and rows[1].role == "coordinator" and rows[1].ts_utc.endswith("Z")
    assert verify_chain(engine).ok


def test_stale_version_is_a_conflict_and_overwrites_nothing(service):
    screen(service)
    service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": 28.0}, reason="fix", expected_version=1)
    with pytest.raises(Conflict):
        service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": 30.0}, reason="x", expected_version=1)
    assert service.get_form(COORDINATOR, "01-001", "SCR", "echo").data["lvef_pct"] == 28.0


def test_eligibility_failure_records_failed_criteria(service):
    service.screen_subject(COORDINATOR, "01-002", "01", "2025-01-10", "2025-01-09")
    data = eligible_screening_data()
    data["echo"]["lvef_pct"] = 41.0
    data["echo"]["lvesv_ml"] = 150
    data["eligibility"]["hepatitis_positive"] = "Y"
    for form, values in data.items():
        if form != "nyha":
            service.save_form(COORDINATOR, "01-002", "SCR", form, values, visit_date="2025-01-10")
    outcome = service.evaluate_eligibility(INVESTIGATOR, "01-002")
    assert not outcome.eligible
    assert outcome.failed == ["IN05", "EX08"] and outcome.not_assessed == ["IN03"]
    with pytest.raises(StateError):
        service.enrol(INVESTIGATOR, "01-002", "2025-01-20")


def test_infusion_sets_day_zero_and_windows(service, engine):
    enrol_and_infuse(service)
    warnings = service.record_visit(COORDINATOR, "01-001", "M1", "2025-03-10")  # day 45
    assert [w.rule for w in warnings] == ["window"]
    assert "study day 45" in warnings[0].message
    with Session(engine) as s:
        subject = s.scalars(select(Subject)).one()
        days = {v.visit_code: (v.study_day, v.in_window) for v in subject.visits}
    assert subject.status == "infused" and subject.infusion_date == dt.date(2025, 1, 24)
    assert days["SCR"] == (-14, True) and days["D0"] == (0, True) and days["M1"] == (45, False)
    with pytest.raises(ValidationFailed) as info:
        service.record_visit(COORDINATOR, "01-001", "D1", "2025-01-20")
    assert info.value.violations[0].rule == "order"


def test_post_infusion_visit_needs_enrolment(service):
    screen(service)
    with pytest.raises(StateError):
        service.save_form(COORDINATOR, "01-001", "M1", "nyha", {"nyha_class": 2}, visit_date="2025-02-20")


def test_roles_and_sites(service):
    screen(service)
    with pytest.raises(PermissionDenied):
        service.save_form(MONITOR, "01-001", "SCR", "nyha", {"nyha_class": 4}, reason="x")
    from regenheart.capture.permissions import Actor
    with pytest.raises(NotFound):
        service.get_form(Actor("other", "coordinator", "02"), "01-001", "SCR", "nyha")


def test_adverse_event_validation_and_study_day(service):
    enrol_and_infuse(service)
    with pytest.raises(ValidationFailed) as info:
        service.record_adverse_event(COORDINATOR, "01-001", {
            "term": "Fever", "category": "FEVER", "onset_date": "2025-01-26", "stop_date": "2025-01-25",
            "ctcae_grade": 1, "serious": "Y", "related_product": "POSSIBLE", "related_procedure": "NOT",
            "outcome": "RECOVERED", "max_temperature_c": 37.5})
    assert {(v.field, v.rule) for v in info.value.violations} == {
        ("stop_date", "AE01"), ("serious", "AE02"), ("max_temperature_c", "AE04")}
    seq = service.record_adverse_event(COORDINATOR, "01-001", {
        "term": "Fever", "category": "FEVER", "onset_date": "2025-01-26", "stop_date": "2025-01-27",
        "ctcae_grade": 1, "serious": "N", "related_product": "POSSIBLE", "related_procedure": "NOT",
        "outcome": "RECOVERED", "max_temperature_c": 38.4})
    assert seq == 1
    with pytest.raises(ValidationFailed):
        service.update_adverse_event(COORDINATOR, "01-001", 1, {"ctcae_grade": 2}, reason=None)
    assert service.update_adverse_event(COORDINATOR, "01-001", 1, {"ctcae_grade": 2}, reason="re-graded") == 2


def test_audit_trail_is_append_only_and_tamper_evident(service, engine):
    screen(service)
    report = verify_chain(engine)
    assert report.ok and report.records > 40
    with engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE audit_trail SET new_value = '99' WHERE seq = 5"))
    # A privileged attacker drops the trigger and edits a row: the chain exposes it.
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_trail_no_update"))
        conn.execute(text("UPDATE audit_trail SET new_value = '99' WHERE seq = 5"))
    report = verify_chain(engine)
    assert not report.ok and report.first_bad_seq == 5 and "altered" in report.problem


def test_deleting_last_audit_rows_is_detected(service, engine):
    screen(service)
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_trail_no_delete"))
        conn.execute(text("DELETE FROM audit_trail WHERE seq = (SELECT max(seq) FROM audit_trail)"))
    assert "removed from the end" in verify_chain(engine).problem


def test_disposition_cannot_precede_the_last_visit(service):
    enrol_and_infuse(service)  # D0 on 2025-01-24
    with pytest.raises(ValidationFailed) as info:
        service.record_disposition(INVESTIGATOR, "01-001", {"status": "WITHDRAWAL", "date": "2025-01-20",
                                                            "reason": "moved away"})
    assert [(v.field, v.rule) for v in info.value.violations] == [("date", "order")]
    assert "D0 on 2025-01-24" in info.value.violations[0].message
    service.record_disposition(INVESTIGATOR, "01-001", {"status": "WITHDRAWAL", "date": "2025-02-01",
                                                        "reason": "moved away"})


def test_correcting_the_infusion_date_moves_every_study_day(service, engine):
    enrol_and_infuse(service)  # D0 on 2025-01-24
    service.record_visit(COORDINATOR, "01-001", "M1", "2025-02-23")  # day 30
    service.record_adverse_event(COORDINATOR, "01-001", {
        "term": "Haematoma", "category": "ACCESS_SITE", "onset_date": "2025-01-25", "ctcae_grade": 1,
        "serious": "N", "related_product": "NOT", "related_procedure": "DEFINITE", "outcome": "RECOVERED"})
    with pytest.raises(ValidationFailed):  # a correction needs a reason
        service.record_visit(COORDINATOR, "01-001", "D0", "2025-01-23")
    assert service.record_visit(COORDINATOR, "01-001", "D0", "2025-01-23", reason="date typed wrongly") == []
    with Session(engine) as s:
        subject = s.scalars(select(Subject)).one()
        days = {v.visit_code: v.study_day for v in subject.visits}
        from regenheart.store.models import AdverseEvent
        ae_day = s.scalars(select(AdverseEvent)).one().study_day
        infusion_audit = s.scalars(select(AuditRecord).where(AuditRecord.field == "infusion_date")).all()
    assert subject.infusion_date == dt.date(2025, 1, 23) and subject.status == "infused"
    assert days["D0"] == 0 and days["M1"] == 31 and days["SCR"] == -13 and ae_day == 2
    assert [(r.old_value, r.new_value, r.reason) for r in infusion_audit][-1] == (
        '"2025-01-24"', '"2025-01-23"', "date typed wrongly")
