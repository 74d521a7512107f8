"""Missing-data codes (issue 12, item 1): declared by the protocol, recorded in place of any form value,
making a form complete, audited like values, missing to checks, scoring and analysis; "Other" answers
need their specify text."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from regenheart import instruments
from regenheart.capture.errors import ValidationFailed
from regenheart.protocol.loader import ProtocolError, parse_protocol
from regenheart.protocol.missing import coded, is_missing, plain
from regenheart.store.audit import verify_chain
from regenheart.store.models import AuditRecord
from regenheart.store.reconcile import check_integrity
from regenheart.store.snapshot import take_snapshot

from ..conftest import COORDINATOR, INVESTIGATOR, eligible_screening_data
from .test_capture import screen

LABS = {"ntprobnp_pg_ml": 2400, "creatinine_mg_dl": 1.1}
MLHFQ = {f"q{i}": i % 6 for i in range(1, 22)}


def violations(excinfo) -> dict[str, tuple[str, str]]:
    return {v.field: (v.rule, v.message) for v in excinfo.value.violations}


def test_the_protocol_declares_the_study_codes(protocol):
    codes = {m.code: m.reason_required for m in protocol.missing_codes}
    assert codes == {"ND": True, "UNK": False, "NA": False, "NASK": True}


def test_a_required_field_coded_not_done_with_a_reason_completes_the_form(service, engine):
    screen(service)
    result = service.save_form(COORDINATOR, "01-001", "SCR", "labs",
                               {"ntprobnp_pg_ml": {"missing": "ND", "reason": "sample haemolysed"},
                                "creatinine_mg_dl": 1.1})
    assert result.status == "complete"
    view = service.get_form(COORDINATOR, "01-001", "SCR", "labs")
    assert view.data["ntprobnp_pg_ml"] == {"missing": "ND", "reason": "sample haemolysed"}
    with Session(engine) as session:
        entry = session.scalars(select(AuditRecord).where(AuditRecord.field == "ntprobnp_pg_ml")).one()
    assert json.loads(entry.new_value) == {"missing": "ND", "reason": "sample haemolysed"}
    assert entry.action == "create"
    assert verify_chain(engine).ok
    assert check_integrity(engine).ok


def test_replacing_a_code_by_the_value_is_an_audited_change_with_a_reason(service, engine):
    screen(service)
    service.save_form(COORDINATOR, "01-001", "SCR", "labs", {"ntprobnp_pg_ml": {"missing": "UNK"},
                                                              "creatinine_mg_dl": 1.1})
    with pytest.raises(ValidationFailed) as excinfo:
        service.save_form(COORDINATOR, "01-001", "SCR", "labs", {"ntprobnp_pg_ml": 2400})
    assert violations(excinfo)["reason"][0] == "reason_required"
    service.save_form(COORDINATOR, "01-001", "SCR", "labs", {"ntprobnp_pg_ml": 2400}, reason="result arrived")
    with Session(engine) as session:
        change = session.scalars(select(AuditRecord).where(AuditRecord.field == "ntprobnp_pg_ml",
                                                           AuditRecord.action == "update")).one()
    assert json.loads(change.old_value) == {"missing": "UNK", "reason": None}
    assert change.new_value == "2400.0" and change.reason == "result arrived"
    assert check_integrity(engine).ok


@pytest.mark.parametrize(("value", "rule", "words"), [
    ({"missing": "ND"}, "reason_required", "ND (Not done) needs a reason"),
    ({"missing": "ND", "reason": "   "}, "reason_required", "needs a reason"),
    ({"missing": "XX"}, "missing_code", "ND (Not done), UNK (Unknown), NA (Not applicable), NASK (Not asked)"),
    ({"missing": "ND", "reason": "x", "note": 1}, "type", '{"missing": CODE, "reason": TEXT}'),
    ({"code": "ND"}, "type", "must be a value"),
    ({"missing": "ND", "reason": 5}, "type", "reason of a missing-data code must be text"),
    ({"missing": "ND", "reason": "x" * 501}, "max_length", "at most 500 characters"),
])
def test_a_bad_code_is_refused_naming_field_rule_and_codes(service, value, rule, words):
    screen(service)
    with pytest.raises(ValidationFailed) as excinfo:
        service.save_form(COORDINATOR, "01-001", "SCR", "labs", {"ntprobnp_pg_ml": value, "creatinine_mg_dl": 1.1})
    found = violations(excinfo)["ntprobnp_pg_ml"]
    assert found[0] == rule and words in found[1]


def test_a_study_without_codes_refuses_them(protocol, engine):
    from regenheart.capture.service import CaptureService

    bare = protocol.model_copy(update={"missing_codes": []})
    service = CaptureService(engine, bare)
    screen(service)
    with pytest.raises(ValidationFailed) as excinfo:
        service.save_form(COORDINATOR, "01-001", "SCR", "labs", {"ntprobnp_pg_ml": {"missing": "ND", "reason": "x"},
                                                                  "creatinine_mg_dl": 1.1})
    assert violations(excinfo)["ntprobnp_pg_ml"] == ("missing_code", "this study declares no missing-data codes")


def test_a_coded_item_is_missing_to_the_instrument_score(service):
    screen(service)
    items = dict(MLHFQ, q5={"missing": "UNK"})
    result = service.save_form(COORDINATOR, "01-001", "SCR", "mlhfq", items)
    expected = instruments.score("mlhfq", dict(MLHFQ, q5=None))  # the scorer's own treatment of a missing item
    assert result.derived == pytest.approx({k: (None if v is None else float(v)) for k, v in expected.items()},
                                           abs=1e-12)
    assert result.derived != pytest.approx(instruments.score("mlhfq", MLHFQ))


def test_cross_field_checks_see_a_coded_value_as_not_evaluable(service):
    """SIXMW01 (distance required when performed) is silent when 'performed' itself is coded."""
    screen(service)
    result = service.save_form(COORDINATOR, "01-001", "SCR", "sixmwt",
                               {"performed": {"missing": "NASK", "reason": "patient left before the test"}})
    assert result.status == "complete"
    with pytest.raises(ValidationFailed) as excinfo:  # the same check still fires on plain values
        service.save_form(COORDINATOR, "01-001", "SCR", "sixmwt", {"performed": "Y"}, reason="test was done")
    assert violations(excinfo)["distance_m"][0] == "SIXMW01"


def test_eligibility_sees_a_coded_screening_value_as_not_assessed(service):
    screen(service)
    service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": {"missing": "ND", "reason": "poor window"}},
                      reason="echo not readable")
    outcome = service.evaluate_eligibility(INVESTIGATOR, "01-001")
    assert not outcome.eligible and outcome.not_assessed


def test_other_needs_its_specify_text_and_only_other(service):
    service.screen_subject(COORDINATOR, "01-001", "01", "2025-01-10", "2025-01-09")
    history = dict(eligible_screening_data()["medical_history"], hf_etiology="OTHER")
    with pytest.raises(ValidationFailed) as excinfo:
        service.save_form(COORDINATOR, "01-001", "SCR", "medical_history", history, visit_date="2025-01-10")
    rule, message = violations(excinfo)["hf_etiology_other"]
    assert rule == "specify_required" and "hf_etiology is OTHER" in message
    with pytest.raises(ValidationFailed) as excinfo:
        service.save_form(COORDINATOR, "01-001", "SCR", "medical_history",
                          dict(history, hf_etiology="IDCM", hf_etiology_other="sarcoid"), visit_date="2025-01-10")
    assert violations(excinfo)["hf_etiology_other"][0] == "specify_not_applicable"
    saved = service.save_form(COORDINATOR, "01-001", "SCR", "medical_history",
                              dict(history, hf_etiology_other="cardiac sarcoidosis"), visit_date="2025-01-10")
    assert saved.status == "complete"


def test_log_records_refuse_codes(service):
    screen(service)
    with pytest.raises(ValidationFailed) as excinfo:
        service.record_adverse_event(COORDINATOR, "01-001", {
            "term": "Headache", "category": "OTHER", "onset_date": "2025-01-11", "ctcae_grade": 1, "serious": "N",
            "related_product": "NOT_RELATED", "related_procedure": "NOT_RELATED", "outcome": "RECOVERED",
            "stop_date": {"missing": "UNK"}})
    assert violations(excinfo)["stop_date"][0] == "missing_code"


def test_the_snapshot_keeps_the_code_beside_a_missing_value(service, engine):
    screen(service)
    service.save_form(COORDINATOR, "01-001", "SCR", "labs", {"ntprobnp_pg_ml": {"missing": "ND", "reason": "lost"},
                                                              "creatinine_mg_dl": 1.1})
    items = take_snapshot(engine).items
    row = items[items["field"] == "ntprobnp_pg_ml"].iloc[0]
    assert row["value"] is None and row["missing_code"] == "ND" and row["missing_reason"] == "lost"
    other = items[items["field"] == "creatinine_mg_dl"].iloc[0]
    assert pd.isna(other["missing_code"]) and other["value"] == pytest.approx(1.1)


def test_plain_and_is_missing():
    values = {"a": 1, "b": coded("ND", "why"), "c": None}
    assert plain(values) == {"a": 1, "b": None, "c": None}
    assert is_missing(values["b"]) and not is_missing({"value": 1}) and not is_missing("ND")


def _protocol_document(protocol_text: str) -> dict:
    import yaml

    return yaml.safe_load(protocol_text)


def test_the_loader_checks_specify_fields_and_duplicate_codes():
    from regenheart.protocol.loader import default_protocol_text

    document = _protocol_document(default_protocol_text())
    fields = document["forms"]["medical_history"]["fields"]
    document["forms"]["medical_history"]["fields"] = [f for f in fields if f["name"] != "hf_etiology_other"]
    document["missing_codes"].append({"code": "ND", "label": "again"})
    with pytest.raises(ProtocolError) as excinfo:
        parse_protocol(document, "test.yaml")
    text = str(excinfo.value)
    assert "forms.medical_history.fields[" in text and "specify_for: hf_etiology" in text
    assert "missing_codes[4].code" in text and "defined twice" in text
