"""ODM export of an adverse event's review: SDV and lock flags and its data queries as Annotations, and its
current e-signature as a Signature, on the AE's ItemGroupData; schema-valid and read back unchanged."""

from __future__ import annotations

import datetime as dt

from argon2 import PasswordHasher
from lxml import etree
from tests.capture.test_capture import enrol_and_infuse
from tests.conftest import COORDINATOR, SHARED

from regenheart.capture.accounts import AccountService
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.capture.workflow import WorkflowService
from regenheart.exchange.mapping import Mapping
from regenheart.exchange.odm import ODM_NS, read_odm, write_odm
from regenheart.store.db import create_study_database

NS = {"odm": ODM_NS}
FEVER = {"term": "Fever", "category": "FEVER", "onset_date": "2025-01-26", "stop_date": "2025-01-27",
         "ctcae_grade": 1, "serious": "N", "related_product": "POSSIBLE", "related_procedure": "NOT",
         "outcome": "RECOVERED", "max_temperature_c": 38.4}
PASSWORD = "correct horse battery 9"


def test_ae_review_state_queries_and_signature_in_odm(tmp_path, protocol):
    engine = create_study_database(tmp_path / "study.db", {"study": protocol.study.nct_id})
    service = CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1))
    enrol_and_infuse(service)
    service.record_adverse_event(COORDINATOR, "01-001", FEVER)
    service.record_adverse_event(COORDINATOR, "01-001", dict(FEVER, term="Headache", category="OTHER",
                                                             max_temperature_c=None))
    accounts = AccountService(engine, protocol, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    accounts.create_user(Actor("admin", "admin"), "inv.smith", "investigator", PASSWORD, site="01",
                         full_name="Irene Smith")
    workflow = WorkflowService(engine, protocol, accounts)
    monitor, manager = Actor("mon1", "monitor"), Actor("dm1", "data_manager")
    query = workflow.open_ae_query(monitor, "01-001", 1, "ctcae_grade", "Grade 1 with 38.4 C: please confirm.")
    workflow.answer_query(COORDINATOR, "01-001", query.seq, "Confirmed from the nursing chart.")
    workflow.close_query(monitor, "01-001", query.seq, "OK")
    workflow.verify_ae(monitor, "01-001", 1)
    workflow.sign_ae(Actor("inv.smith", "investigator", "01"), "01-001", 1, password=PASSWORD)
    workflow.lock_ae(manager, "01-001", 1)
    path = tmp_path / "study.xml"
    write_odm(engine, protocol, path)
    doc = etree.parse(str(path))
    etree.XMLSchema(etree.parse(str(SHARED / "schemas" / "odm-1.3.2" / "ODM1-3-2.xsd"))).assertValid(doc)

    groups = {int(g.get("ItemGroupRepeatKey")): g for g in doc.iterfind(".//odm:ItemGroupData[@ItemGroupOID='IG.AE']", NS)}
    assert set(groups) == {1, 2}

    def flags(group):
        state = group.find("odm:Annotation[@SeqNum='1']", NS)
        return {f.findtext("odm:FlagType", namespaces=NS): f.findtext("odm:FlagValue", namespaces=NS)
                for f in state.iterfind("odm:Flag", NS)}

    assert flags(groups[1]) == {"SDV": "Y", "LOCK": "Y"} and flags(groups[2]) == {"SDV": "N", "LOCK": "N"}
    signature = groups[1].find("odm:Signature", NS)
    assert signature.find("odm:UserRef", NS).get("UserOID") == "USR.inv.smith"
    assert groups[2].find("odm:Signature", NS) is None
    sigdef = signature.find("odm:SignatureRef", NS).get("SignatureOID")
    assert doc.find(f"odm:AdminData/odm:SignatureDef[@OID='{sigdef}']", NS) is not None
    comment = groups[1].findtext("odm:Annotation[@SeqNum='2']/odm:Comment", namespaces=NS)
    assert comment.startswith("Query 1 on ctcae_grade (closed)") and "Confirmed from the nursing chart" in comment
    # the annotations are not data: the file reads back to the same two adverse events
    source = read_odm(path, protocol, Mapping.identity(protocol))
    assert not source.problems and not source.unmapped
    assert [len(s.adverse_events) for s in source.subjects] == [2]
