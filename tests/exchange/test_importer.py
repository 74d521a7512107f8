"""The import engine: the capture path (checks, audit records, derived scores), atomicity per subject
and per import, dry runs, idempotent re-import, corrections, locked and signed forms, refusal rows,
and the capture service's batch mode underneath it."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.conftest import COORDINATOR
from tests.exchange._plans import plan_to_source

from regenheart import instruments
from regenheart.capture.accounts import AccountService
from regenheart.capture.errors import ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.capture.workflow import WorkflowService
from regenheart.exchange.importer import import_reason, import_source
from regenheart.exchange.records import FormEntry, Origin, Refusal, SourceData, SourceValue, SubjectEntry
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database
from regenheart.store.models import AuditRecord, FormRecord, ItemValue, Subject
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import generate_cohort
from regenheart.synth.entry import enter_cohort

IMPORTER = Actor("cli:tester", "data_manager")


@pytest.fixture(scope="module")
def plan(protocol):
    """Three infused patients (one with a post-SDV correction) and one screen failure; SYNTHETIC."""
    cohort = generate_cohort(protocol, seed=1, n_enrolled=3, n_screen_failures=1)
    assert sum(len(s.corrections) for s in cohort.subjects) == 1 and cohort.n_enrolled == 3
    return cohort


def audit_count(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(AuditRecord))


def rows_of(engine, model) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def item(engine, code, visit, form, field):
    snap = take_snapshot(engine)
    rows = snap.items[(snap.items.subject_code == code) & (snap.items.visit_code == visit)
                      & (snap.items.form_code == form) & (snap.items.field == field)]
    return rows["value"].iloc[0]


def with_value(source: SourceData, code: str, visit: str, form: str, field: str, raw) -> SourceData:
    """A copy of ``source`` with one value replaced (and a new SHA-256, as a corrected file has)."""
    changed = copy.deepcopy(source)
    changed.sha256 = hashlib.sha256((source.sha256 + f"{code}{visit}{form}{field}{raw}").encode()).hexdigest()
    entry = next(s for s in changed.subjects if s.code == code)
    target = next(f for f in entry.forms if f.visit == visit and f.form == form)
    old = target.values[field]
    target.values[field] = SourceValue(raw, old.origin)
    return changed


def test_import_goes_through_capture_with_the_import_reason_on_every_record(service, engine, plan):
    source = plan_to_source(plan)
    report = import_source(service, IMPORTER, source)
    assert report.ok and report.committed
    assert report.subjects.written == 4 and report.subjects.refused == 0
    assert report.forms.written == sum(len(s.forms) + len(s.adverse_events) + (s.disposition is not None)
                                       for s in plan.subjects)
    snap = take_snapshot(engine)
    status = dict(zip(snap.subjects.subject_code, snap.subjects.status, strict=True))
    assert status == {"01-001": "discontinued", "01-002": "discontinued", "01-003": "screen_failed",
                      "01-004": "completed"}
    failed = dict(zip(snap.subjects.subject_code, snap.subjects.eligibility_failed, strict=True))
    assert failed["01-003"] and not failed["01-004"]  # capture evaluated the criteria on the imported forms
    assert verify_chain(engine).ok
    with Session(engine) as session:
        records = session.scalars(select(AuditRecord)).all()
    assert len(records) == report.audit_records
    reason = import_reason(source)
    assert reason == f"import template plan.json sha256={source.sha256}"
    # first entries, eligibility, enrolment, infusion and disposition all name the import; derived scores
    # keep their own reason (the scoring version), which says they were computed, not imported
    assert {r.reason for r in records if r.action != "derive"} == {reason}
    assert {r.username for r in records} == {"cli:tester"}
    # derived scores are computed by capture from the imported items (independent recomputation here)
    kccq = snap.wide("kccq")
    first = kccq[(kccq.subject_code == "01-001") & (kccq.visit_code == "SCR")].iloc[0]
    items = {k: int(first[k]) for k in protocol_fields(service, "kccq") if first[k] == first[k]}
    expected = instruments.score("kccq", items)["overall_summary"]
    scores = snap.scores("kccq")
    got = scores[(scores.subject_code == "01-001") & (scores.visit_code == "SCR")]["overall_summary"].iloc[0]
    assert got == pytest.approx(expected, abs=1e-9)


def protocol_fields(service, form):
    return service.protocol.forms[form].field_names


def test_import_writes_the_same_audit_records_as_typed_entry(protocol, tmp_path, plan):
    """Same records (action, entity, subject, visit, form, field, old and new value) as the synthetic
    site users typing the plan in; only who and why differ."""
    plain = copy.deepcopy(plan)
    for subject in plain.subjects:
        subject.corrections = []  # a correction is an update when typed, a first entry when imported
    today = lambda: dt.date(2026, 1, 1)
    typed = create_study_database(tmp_path / "typed.db", {})
    enter_cohort(CaptureService(typed, protocol, today=today), plain)
    imported = create_study_database(tmp_path / "imported.db", {})
    assert import_source(CaptureService(imported, protocol, today=today), IMPORTER, plan_to_source(plain)).ok

    def content(engine):
        with Session(engine) as session:
            return sorted((r.action, r.entity, r.subject_code or "", r.visit_code or "", r.form_code or "",
                           r.record_key or "", r.field or "", r.old_value or "", r.new_value or "")
                          for r in session.scalars(select(AuditRecord)))

    assert content(typed) == content(imported)


def test_reimport_writes_nothing_and_a_correction_writes_only_the_change(service, engine, plan):
    source = plan_to_source(plan)
    import_source(service, IMPORTER, source)
    before = audit_count(engine)
    again = import_source(service, IMPORTER, source)
    assert again.ok and audit_count(engine) == before and again.audit_records == 0
    assert again.forms.written == 0 and again.values.written == 0 and again.subjects.unchanged == 4
    old = item(engine, "01-004", "M1", "echo", "lvef_pct")
    corrected = with_value(source, "01-004", "M1", "echo", "lvef_pct", str(old + 1.5))
    fixed = import_source(service, IMPORTER, corrected)
    assert fixed.ok and fixed.values.written == 1 and fixed.forms.written == 1 and fixed.subjects.written == 1
    assert item(engine, "01-004", "M1", "echo", "lvef_pct") == pytest.approx(old + 1.5)
    with Session(engine) as session:
        new = session.scalars(select(AuditRecord).where(AuditRecord.seq > before)).all()
        record = session.scalars(select(FormRecord).where(FormRecord.visit_code == "M1",
                                                          FormRecord.form_code == "echo",
                                                          FormRecord.subject_id == select(Subject.id).where(
                                                              Subject.subject_code == "01-004").scalar_subquery())).one()
    assert [(r.action, r.field, r.old_value, r.new_value) for r in new] == [
        ("update", "lvef_pct", str(old), str(old + 1.5))]
    assert new[0].reason == import_reason(corrected) != import_reason(source)
    assert record.version == 2
    assert verify_chain(engine).ok


def test_a_refused_subject_is_not_written_and_the_others_are(service, engine, plan):
    source = with_value(plan_to_source(plan), "01-002", "M1", "echo", "lvef_pct", "95")
    report = import_source(service, IMPORTER, source)
    assert report.committed and not report.ok
    assert report.subjects.written == 3 and report.subjects.refused == 1
    snap = take_snapshot(engine)
    assert sorted(snap.subjects.subject_code) == ["01-001", "01-003", "01-004"]
    assert not (snap.items.subject_code == "01-002").any()
    refusal = report.refusals[0]
    origin = next(f for f in source.subjects[1].forms if f.visit == "M1" and f.form == "echo").values["lvef_pct"].origin
    assert refusal.as_row() == {"file": "echo.csv", "location": origin.location, "column": "lvef_pct",
                                "subject": "01-002", "visit": "M1", "form": "echo", "field": "lvef_pct",
                                "value": "95", "rule": "range",
                                "message": "must be between 5 and 80 % (plausible range)"}
    assert len(report.refusals) == 1
    assert verify_chain(engine).ok
    assert list(Refusal.REPORT_COLUMNS) == list(refusal.as_row())


def test_all_or_nothing_and_dry_run_write_nothing(service, engine, plan):
    bad = with_value(plan_to_source(plan), "01-002", "SCR", "vital_signs", "sbp_mmhg", "abc")
    before = (audit_count(engine), rows_of(engine, Subject), rows_of(engine, ItemValue))
    strict = import_source(service, IMPORTER, bad, all_or_nothing=True)
    assert not strict.committed and strict.subjects.written == 0 and strict.subjects.refused == 4
    assert [(r.subject, r.field, r.rule) for r in strict.refusals] == [("01-002", "sbp_mmhg", "type"),
                                                                       ("01-002", None, "not_checked")]
    assert (audit_count(engine), rows_of(engine, Subject), rows_of(engine, ItemValue)) == before
    dry = import_source(service, IMPORTER, plan_to_source(plan), dry_run=True)
    assert dry.ok and not dry.committed and dry.subjects.written == 4 and dry.audit_records > 0
    assert (audit_count(engine), rows_of(engine, Subject), rows_of(engine, ItemValue)) == before
    real = import_source(service, IMPORTER, plan_to_source(plan))
    # the dry run ran the real path: it predicted exactly what the real import wrote
    assert (real.forms, real.values, real.audit_records) == (dry.forms, dry.values, dry.audit_records)
    assert verify_chain(engine).ok


def test_values_in_locked_or_signed_forms_are_refused_not_overwritten(service, engine, protocol, plan):
    source = plan_to_source(plan)
    import_source(service, IMPORTER, source)
    accounts = AccountService(engine, protocol)
    admin = Actor("cli:admin", "admin")
    accounts.create_user(admin, "inv1", "investigator", "correct horse battery staple 1", site="01",
                         full_name="Ivy Investigator")
    workflow = WorkflowService(engine, protocol, accounts)
    workflow.lock(Actor("dm1", "data_manager"), "01-004", "M1", "echo", confirm=True)
    workflow.sign(Actor("inv1", "investigator", "01"), "01-004", "M6", "nyha",
                  password="correct horse battery staple 1")
    lvef = item(engine, "01-004", "M1", "echo", "lvef_pct")
    nyha = item(engine, "01-004", "M6", "nyha", "nyha_class")
    changed = with_value(with_value(source, "01-004", "M1", "echo", "lvef_pct", str(lvef + 2)),
                         "01-004", "M6", "nyha", "nyha_class", str(1 if nyha != 1 else 2))
    before = audit_count(engine)
    report = import_source(service, IMPORTER, changed)
    assert sorted((r.visit, r.form, r.field, r.rule) for r in report.refusals) == [
        ("M1", "echo", "lvef_pct", "locked"), ("M6", "nyha", "nyha_class", "signed")]
    assert "is locked; its stored value" in report.refusals[0].message
    assert item(engine, "01-004", "M1", "echo", "lvef_pct") == lvef
    assert item(engine, "01-004", "M6", "nyha", "nyha_class") == nyha
    assert audit_count(engine) == before


def test_a_stated_eligibility_that_capture_does_not_confirm_is_refused(service, engine, plan):
    source = plan_to_source(plan)
    failure = next(s for s in source.subjects if s.code == "01-003")
    failure.stated_eligible = SourceValue("Y", Origin("subjects.csv", "row 4", "eligible"))
    report = import_source(service, IMPORTER, source)
    refusal = next(r for r in report.refusals if r.subject == "01-003")
    assert refusal.rule == "eligibility" and refusal.origin.column == "eligible"
    assert "states eligible=Y" in refusal.message and "not eligible (failed:" in refusal.message
    assert report.subjects.refused == 1 and report.subjects.written == 3


def test_unknown_subjects_visits_and_forms_are_refused(service, engine):
    origin = Origin("echo.csv", "row 2")
    source = SourceData("x.csv", "0" * 64, "template", subjects=[
        SubjectEntry("01-777", origin, forms=[FormEntry("SCR", "echo", {"lvef_pct": SourceValue("30", origin)},
                                                        origin)]),
    ])
    report = import_source(service, IMPORTER, source)
    assert [(r.subject, r.rule) for r in report.refusals] == [("01-777", "unknown_subject")]
    entry = SubjectEntry("01-001", origin, site=SourceValue("01", origin),
                         screening_date=SourceValue("2025-01-10", origin), consent_date=SourceValue("2025-01-09", origin),
                         forms=[FormEntry("M12", "echo", {}, origin), FormEntry("SCR", "catheterization", {}, origin)])
    report = import_source(service, IMPORTER, dataclasses.replace(source, subjects=[entry]))
    assert [(r.visit, r.form, r.rule) for r in report.refusals] == [
        ("M12", "echo", "unknown_visit"), ("SCR", "catheterization", "unknown_form")]
    assert rows_of(engine, Subject) == 0


def test_a_read_problem_outside_any_subject_writes_nothing(service, engine, plan):
    source = plan_to_source(plan)
    source.problems.append(Refusal(Origin("labs.csv", "row 7"), "encoding", "not UTF-8 text"))
    report = import_source(service, IMPORTER, source)
    assert not report.committed and report.subjects.written == 0 and report.subjects.refused == 4
    assert rows_of(engine, Subject) == 0 and audit_count(engine) == 0


def test_site_restricted_importer_cannot_write_another_sites_subjects(service, engine, plan):
    report = import_source(service, Actor("coord9", "coordinator", "09"), plan_to_source(plan))
    assert report.subjects.refused == 4 and rows_of(engine, Subject) == 0
    assert {r.rule for r in report.refusals} == {"permission"}


def test_unit_of_work_keeps_a_refused_call_out_and_the_chain_verifies(service, engine):
    with service.unit_of_work(reason="batch test") as work:
        service.screen_subject(COORDINATOR, "01-001", "01", "2025-01-10", "2025-01-09")
        with pytest.raises(ValidationFailed):  # visit date written first, then the form refused: both undone
            service.save_form(COORDINATOR, "01-001", "SCR", "nyha", {"nyha_class": 9}, visit_date="2025-01-10")
        with pytest.raises(RuntimeError), work.savepoint():
            service.screen_subject(COORDINATOR, "01-002", "01", "2025-01-10", "2025-01-09")
            raise RuntimeError("roll this subject back")
        service.save_form(COORDINATOR, "01-001", "SCR", "nyha", {"nyha_class": 3}, visit_date="2025-01-10")
    snap = take_snapshot(engine)
    assert list(snap.subjects.subject_code) == ["01-001"] and len(snap.visits) == 1
    assert verify_chain(engine).ok
    with Session(engine) as session:
        reasons = {r.reason for r in session.scalars(select(AuditRecord))}
    assert reasons == {"batch test"}
    with service.unit_of_work() as work:  # discard: nothing of the unit is kept
        service.screen_subject(COORDINATOR, "01-003", "01", "2025-01-10", "2025-01-09")
        work.discard()
    assert rows_of(engine, Subject) == 1 and verify_chain(engine).ok
    # outside a unit of work the service behaves as before: first entries carry no reason
    service.screen_subject(COORDINATOR, "01-004", "01", "2025-01-10", "2025-01-09")
    with Session(engine) as session:
        last = session.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)).one()
    assert last.subject_code == "01-004" and last.reason is None


def test_progress_is_reported_per_subject(service, plan):
    calls = []
    import_source(service, IMPORTER, plan_to_source(plan), progress=lambda d, t, c: calls.append((d, t, c)))
    assert calls == [(i, 4, f"01-00{i}") for i in range(1, 5)]



def test_a_benchmark_sized_cohort_keeps_the_trial_mix_and_past_dates(protocol):
    from regenheart.synth.cohort import cohort_sizes

    assert cohort_sizes(35) == {"n_enrolled": 30, "n_screen_failures": 5}
    assert cohort_sizes(1000) == {"n_enrolled": 857, "n_screen_failures": 143}  # 1000 x 5/35 = 142.9
    big = generate_cohort(protocol, seed=2, **cohort_sizes(1000))
    assert len(big.subjects) == 1000 and big.n_enrolled == 857
    assert len({s.code for s in big.subjects}) == 1000
    last = max(date for s in big.subjects for date in s.visit_dates.values())
    assert last < dt.date(2026, 1, 1)  # every date a site could have entered by the fixed 'today' of the tests
