"""A unit of work (batch mode) stores exactly what the same calls store one transaction at a time.

Batch mode keeps the rows it inserts as plain rows and defers audit records, items and scores to one
INSERT per savepoint; these tests hold it to the per-call path: same tables, same audit content, a
verifiable chain, and reads inside the unit that see every earlier write.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, text

from regenheart.capture.errors import ValidationFailed
from regenheart.capture.service import CaptureService
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database

from ..conftest import COORDINATOR, INVESTIGATOR, eligible_screening_data

TABLES = {
    "subjects": "SELECT * FROM subjects ORDER BY id",
    "visits": "SELECT * FROM visits ORDER BY id",
    "form_records": "SELECT * FROM form_records ORDER BY id",
    "item_values": "SELECT * FROM item_values ORDER BY id",
    "derived_values": "SELECT * FROM derived_values ORDER BY id",
    "adverse_events": "SELECT * FROM adverse_events ORDER BY id",
    # time stamps and hashes differ between two runs by nature; the chain is verified separately
    "audit_trail": "SELECT seq, username, role, action, entity, subject_code, visit_code, form_code, record_key, "
                   "field, old_value, new_value, reason FROM audit_trail ORDER BY seq",
}
KCCQ = {"q1a": 1, "q1b": 2, "q1c": 2, "q1d": 2, "q1e": 3, "q1f": 3, "q2": 2, "q3": 2, "q4": 3, "q5": 3, "q6": 4,
        "q7": 3, "q8": 3, "q9": 3, "q10": 4, "q11": 4, "q12": 3, "q13": 2, "q14": 2, "q15a": 3, "q15b": 2,
        "q15c": 2, "q15d": 3}


def _calls(service: CaptureService, code: str, *, refuse: bool) -> list[str]:
    """One subject's life in calls, with corrections of rows made earlier in the same unit; returns refusals."""
    refused = []
    service.screen_subject(COORDINATOR, code, "01", "2025-01-10", "2025-01-09")
    for form, data in eligible_screening_data().items():
        service.save_form(COORDINATOR, code, "SCR", form, data, visit_date="2025-01-10")
    service.record_visit(COORDINATOR, code, "SCR", "2025-01-11", reason="date typed wrongly")  # a new visit, moved
    echo = dict(eligible_screening_data()["echo"], lvef_pct=31)
    service.save_form(COORDINATOR, code, "SCR", "echo", echo, reason="re-read")  # a new record, changed
    assert service.evaluate_eligibility(INVESTIGATOR, code).eligible  # reads the items saved just before
    service.enrol(INVESTIGATOR, code, "2025-01-20")
    service.save_form(COORDINATOR, code, "D0", "catheterization", {
        "access_site": "RADIAL", "vessel": "LMCA", "timi_before": 3, "timi_after": 3, "dose_cells_1e6": 10,
        "infusion_completed": "Y", "infusion_duration_min": 15}, visit_date="2025-01-24")
    if refuse:  # refused: nothing of it is written, in a unit as alone
        try:
            service.save_form(COORDINATOR, code, "M1", "kccq", dict(KCCQ, q1a=9), visit_date="2025-02-24")
        except ValidationFailed as exc:
            refused.append(exc.violations[0].rule)
    service.save_form(COORDINATOR, code, "M1", "kccq", KCCQ, visit_date="2025-02-24")
    service.save_form(COORDINATOR, code, "M1", "kccq", dict(KCCQ, q2=1), reason="patient corrected")  # rescored
    service.record_visit(COORDINATOR, code, "D0", "2025-01-25", reason="infusion date corrected")  # moves day 0
    service.record_adverse_event(COORDINATOR, code, {
        "term": "Headache", "category": "OTHER", "onset_date": "2025-01-26", "ctcae_grade": 1, "serious": "N",
        "related_product": "NOT", "related_procedure": "UNLIKELY", "outcome": "RECOVERED"})
    return refused


def stored_tables(engine) -> dict[str, list[tuple]]:
    """Every stored table (TABLES) as row tuples, to compare two databases built by the same calls."""
    with engine.connect() as conn:
        return {table: [tuple(r) for r in conn.execute(text(sql))] for table, sql in TABLES.items()}


@pytest.mark.parametrize("call_savepoints", [True, False])
def test_a_unit_of_work_stores_what_single_calls_store(protocol, tmp_path, call_savepoints):
    # Without savepoints of its own a refused call is the end of its subject (the caller rolls the
    # subject back): that mode is run without the refused call.
    refuse = call_savepoints
    today = lambda: dt.date(2026, 1, 1)
    alone = create_study_database(tmp_path / "alone.db", {})
    refused_alone = _calls(CaptureService(alone, protocol, today=today), "01-001", refuse=refuse)
    batch = create_study_database(tmp_path / "batch.db", {})
    service = CaptureService(batch, protocol, today=today)
    with service.unit_of_work() as work:
        work.call_savepoints = call_savepoints
        with work.savepoint():
            refused_batch = _calls(service, "01-001", refuse=refuse)
    assert refused_batch == refused_alone == (["codelist"] if refuse else [])
    expected, got = stored_tables(alone), stored_tables(batch)
    for table in TABLES:
        assert got[table] == expected[table], table
    assert len(got["audit_trail"]) > 100 and got["derived_values"] and got["adverse_events"]
    assert verify_chain(batch).ok and verify_chain(alone).ok


def test_a_rolled_back_savepoint_leaves_nothing_and_the_chain_verifies(protocol, tmp_path):
    engine = create_study_database(tmp_path / "study.db", {})
    service = CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1))
    with service.unit_of_work() as work:
        with work.savepoint():
            service.screen_subject(COORDINATOR, "01-001", "01", "2025-01-10", "2025-01-09")
        with pytest.raises(RuntimeError), work.savepoint():
            service.screen_subject(COORDINATOR, "01-002", "01", "2025-01-10", "2025-01-09")
            for form, data in eligible_screening_data().items():
                service.save_form(COORDINATOR, "01-002", "SCR", form, data, visit_date="2025-01-10")
            raise RuntimeError("the caller gives up on this subject")
        with work.savepoint():  # the rolled-back records' numbers are taken again, the chain unbroken
            service.screen_subject(COORDINATOR, "01-003", "01", "2025-01-10", "2025-01-09")
    stored = stored_tables(engine)
    assert [r[1] for r in stored["subjects"]] == ["01-001", "01-003"]
    assert not stored["visits"] and not stored["item_values"]
    assert [r[0] for r in stored["audit_trail"]] == list(range(1, len(stored["audit_trail"]) + 1))
    report = verify_chain(engine)
    assert report.ok and report.records == len(stored["audit_trail"]) == 10


# ---------------------------------------------------------------------------------------------------
# The API's group transactions: forms loaded ahead (prefetch_forms) and the audit chain taken at the end.

VITALS = {"sbp_mmhg": 118, "dbp_mmhg": 72, "heart_rate_bpm": 64, "temperature_c": 36.6}


def _seeded(path, protocol) -> CaptureService:
    """01-001 with a scored KCCQ at M1 and an open query on it; 01-002 screened; 01-003 with vital signs."""
    from regenheart.capture.workflow import WorkflowService

    from ..conftest import MONITOR

    engine = create_study_database(path, {})
    service = CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1))
    _calls(service, "01-001", refuse=False)
    WorkflowService(engine, protocol).open_query(MONITOR, "01-001", "M1", "kccq", "q2", "please confirm")
    service.screen_subject(COORDINATOR, "01-002", "01", "2025-01-10", "2025-01-09")
    service.screen_subject(COORDINATOR, "01-003", "01", "2025-01-10", "2025-01-09")
    service.save_form(COORDINATOR, "01-003", "SCR", "vital_signs", VITALS, visit_date="2025-01-10")
    return service


def _group_calls(service: CaptureService) -> list:
    """The saves of one group transaction, with every outcome (result, or the kind of refusal)."""
    def save(code, visit, form, data, **kw):
        try:
            result = service.save_form(COORDINATOR, code, visit, form, data, **kw)
            outcome = (result.version, result.status, result.changed, result.derived, result.data)
        except Exception as exc:  # noqa: BLE001 - the refusal is the outcome compared
            outcome = (type(exc).__name__, str(exc))
        try:
            return outcome, service.unresolved_queries(COORDINATOR, code, visit, form)
        except Exception as exc:  # noqa: BLE001
            return outcome, type(exc).__name__

    return [
        save("01-001", "M1", "kccq", dict(KCCQ, q2=3), reason="patient re-read the item"),  # rescored, has a query
        save("01-002", "SCR", "vital_signs", VITALS, visit_date="2025-01-10"),  # a new record and visit
        save("01-002", "SCR", "vital_signs", dict(VITALS, sbp_mmhg=121), reason="re-measured", expected_version=1),
        save("01-003", "SCR", "vital_signs", dict(VITALS, sbp_mmhg=999), reason="typo"),  # refused: rolled back
        save("01-003", "SCR", "vital_signs", dict(VITALS, sbp_mmhg=122), reason="x", expected_version=7),  # stale
        save("01-003", "SCR", "vital_signs", dict(VITALS, sbp_mmhg=124), reason="re-measured", expected_version=1),
        save("01-999", "SCR", "vital_signs", VITALS, visit_date="2025-01-10"),  # no such subject
    ]


FORMS = [("01-001", "M1", "kccq"), ("01-002", "SCR", "vital_signs"), ("01-003", "SCR", "vital_signs"),
         ("01-999", "SCR", "vital_signs")]


def test_a_group_transaction_with_forms_loaded_ahead_and_a_late_chain_stores_what_single_calls_store(
        protocol, tmp_path):
    alone = _seeded(tmp_path / "alone.db", protocol)
    expected = _group_calls(alone)
    batch = _seeded(tmp_path / "batch.db", protocol)
    before = stored_tables(batch.engine)["audit_trail"]
    selects: list[str] = []
    with batch.unit_of_work(forms=FORMS, late_chain=True) as work:
        assert sorted(work.forms) == [(1, "M1", "kccq"), (2, "SCR", "vital_signs"), (3, "SCR", "vital_signs")]
        assert work.open_queries == {(1, "M1", "kccq"): 1, (2, "SCR", "vital_signs"): 0, (3, "SCR", "vital_signs"): 0}
        listen = lambda _c, _cur, statement, *_: selects.append(statement) if statement.startswith("SELECT") else None
        event.listen(batch.engine, "before_cursor_execute", listen)
        got = _group_calls(batch)
        event.remove(batch.engine, "before_cursor_execute", listen)
    # The first three saves and their query counts read no subject, visit, record or query count (loaded
    # ahead): only SQLite's next record id, and the record the second inserted, as stored, for the third.
    # The refusal of the fourth starts the session afresh: later calls read for themselves.
    first = next(i for i, statement in enumerate(selects) if "FROM subjects" in statement)
    assert first == 3 and "max(form_records.id)" in selects[0] and "FROM item_values" in selects[2]
    assert got == expected
    assert expected[0][1] == 1 and expected[3][0][0] == "ValidationFailed" and expected[4][0][0] == "Conflict"
    assert expected[6] == (("NotFound", "subject 01-999 not found"), "NotFound")
    assert stored_tables(batch.engine) == stored_tables(alone.engine)
    assert verify_chain(batch.engine).ok and verify_chain(alone.engine).ok
    # The late chain: the group's records follow the earlier ones, numbered on, with one time at the end.
    with batch.engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, ts_utc FROM audit_trail ORDER BY seq")).all()
    added = rows[len(before):]
    assert len(added) == 9 and {ts for _, ts in added} == {added[0][1]} and added[0][1] >= rows[len(before) - 1][1]


def test_a_late_chain_keeps_the_records_of_earlier_savepoints_when_a_later_one_rolls_back(protocol, tmp_path):
    service = _seeded(tmp_path / "study.db", protocol)
    seq_before = stored_tables(service.engine)["audit_trail"][-1][0]
    with service.unit_of_work(late_chain=True) as work:
        with work.savepoint():
            service.save_form(COORDINATOR, "01-003", "SCR", "vital_signs", dict(VITALS, sbp_mmhg=130), reason="a")
        with pytest.raises(RuntimeError), work.savepoint():
            service.save_form(COORDINATOR, "01-002", "SCR", "vital_signs", VITALS, visit_date="2025-01-10")
            raise RuntimeError("the caller gives up on this subject")
        with work.savepoint():
            service.save_form(COORDINATOR, "01-003", "SCR", "vital_signs", dict(VITALS, sbp_mmhg=131), reason="b")
    trail = stored_tables(service.engine)["audit_trail"]
    added = [row for row in trail if row[0] > seq_before]
    assert [(r[3], r[4], r[10], r[11], r[12]) for r in added] == [
        ("update", "item", '118', '130', "a"), ("update", "item", '130', '131', "b")]
    assert [r[0] for r in added] == [seq_before + 1, seq_before + 2]
    assert verify_chain(service.engine).ok
