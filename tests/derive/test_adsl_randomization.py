"""ADSL of a randomized design: RANDFL, RANDDT and STRATAR from the allocation slot each subject took
(checked against the slots in the database, which the randomization tests check against the list)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from regenheart.capture import randomization as rz
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.derive.adam import derive_adsl
from regenheart.protocol import load_protocol
from regenheart.store.models import RandomizationSlot, Subject
from regenheart.store.snapshot import take_snapshot

from ..capture.test_randomization import INVESTIGATOR, STATISTICIAN, screen_eligible


def test_adsl_carries_the_stratum_of_the_slot_taken(engine):
    protocol = load_protocol().model_copy(update={"active_protocol_version": "1.0"})
    service = CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1))
    rz.generate_list(engine, protocol, STATISTICIAN, seed=11)
    screen_eligible(service, "01-001", lvef=22.0)
    screen_eligible(service, "01-002", lvef=31.0)
    screen_eligible(service, "01-003", lvef=31.0)  # eligible, not enrolled: not randomized
    service.enrol(INVESTIGATOR, "01-001", "2025-01-15")
    service.enrol(INVESTIGATOR, "01-002", "2025-01-17")
    adsl = derive_adsl(protocol, take_snapshot(engine)).set_index("SUBJID")
    with Session(engine) as session:
        taken = dict(session.execute(select(Subject.subject_code, RandomizationSlot.stratum)
                                     .join(Subject, Subject.id == RandomizationSlot.subject_id)).all())
    assert taken == {"01-001": "site=01; lvef_stratum=LVEF<=25", "01-002": "site=01; lvef_stratum=LVEF>25"}
    assert adsl["STRATAR"].to_dict() == {"01-001": taken["01-001"], "01-002": taken["01-002"], "01-003": None}
    assert adsl["RANDFL"].to_dict() == {"01-001": "Y", "01-002": "Y", "01-003": "N"}
    assert adsl.loc["01-002", "RANDDT"] == dt.date(2025, 1, 17) and adsl.loc["01-003", "RANDDT"] is None


def test_single_arm_adsl_has_no_randomization_columns(engine, protocol):
    service = CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1))
    screen_eligible(service, "01-001")
    service.enrol(Actor("inv1", "investigator", "01"), "01-001", "2025-01-15")
    adsl = derive_adsl(protocol, take_snapshot(engine))
    assert not {"RANDFL", "RANDDT", "STRATAR"} & set(adsl.columns)
