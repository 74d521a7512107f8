"""Batch entry of a synthetic cohort (one unit of work) stores what per-call entry stores."""

from __future__ import annotations

import datetime as dt

from regenheart.capture.service import CaptureService
from regenheart.store.db import create_study_database
from regenheart.synth import enter_cohort, generate_cohort

from ..capture.test_unit_of_work import TABLES, stored_tables


def _entered(protocol, tmp_path, name, *, batch):
    engine = create_study_database(tmp_path / f"{name}.db", {"synthetic": "true"}, durable=False)
    cohort = generate_cohort(protocol, seed=5, n_enrolled=4, n_screen_failures=1)
    ticks = []
    stats = enter_cohort(CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1)), cohort,
                         progress=ticks.append, batch=batch)
    rows = stored_tables(engine)  # every table, without the audit columns that differ by nature
    engine.dispose()
    return stats, ticks, rows


def test_batch_entry_stores_the_same_values_and_audit_records(protocol, tmp_path):
    per_call = _entered(protocol, tmp_path, "per-call", batch=False)
    batch = _entered(protocol, tmp_path, "batch", batch=True)
    assert batch[0] == per_call[0] and per_call[0].subjects == 5 and per_call[0].forms > 100
    assert batch[1] == per_call[1]  # progress once per subject, in order
    for table in TABLES:
        assert batch[2][table] == per_call[2][table], table
    assert len(batch[2]["audit_trail"]) > 1000
