"""A unit of work (batch mode) stores exactly what the same calls store one transaction at a time.

Batch mode keeps the rows it inserts as plain rows and defers audit records, items and scores to one
INSERT per savepoint; these tests hold it to the per-call path: same tables, same audit content, a
verifiable chain, and reads inside the unit that see every earlier write.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

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
