"""The ODM export's AdminData lists the database's sites (protocol sites and those administrators added,
renamed or deactivated), valid against the official ODM 1.3.2 schema."""

from __future__ import annotations

import datetime as dt

from lxml import etree
from tests.conftest import COORDINATOR, SHARED, eligible_screening_data

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.capture.sites import SiteService
from regenheart.exchange.odm import ODM_NS, write_odm
from regenheart.store.db import create_study_database

NS = {"odm": ODM_NS}
ADMIN = Actor("admin1", "admin")


def test_added_and_renamed_sites_are_odm_locations(tmp_path, protocol):
    engine = create_study_database(tmp_path / "study.db", {"study": protocol.study.nct_id})
    sites = SiteService(engine, protocol)
    sites.seed_from_protocol()
    sites.add_site(ADMIN, "02", "Second site", reason="new site opened")
    sites.update_site(ADMIN, "01", name="Taraz cardiac centre", reason="renamed")
    service = CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1))
    service.screen_subject(Actor("coord2", "coordinator", "02"), "02-001", "02", "2025-01-10", "2025-01-09")
    service.screen_subject(COORDINATOR, "01-001", "01", "2025-01-10", "2025-01-09")
    service.save_form(COORDINATOR, "01-001", "SCR", "demographics", eligible_screening_data()["demographics"],
                      visit_date="2025-01-10")
    path = tmp_path / "study.xml"
    write_odm(engine, protocol, path)
    doc = etree.parse(str(path))
    etree.XMLSchema(etree.parse(str(SHARED / "schemas" / "odm-1.3.2" / "ODM1-3-2.xsd"))).assertValid(doc)
    locations = {loc.get("OID"): loc.get("Name") for loc in doc.iterfind("odm:AdminData/odm:Location", NS)}
    assert locations == {"LOC.01": "Taraz cardiac centre", "LOC.02": "Second site"}
    refs = {sd.get("SubjectKey"): sd.find("odm:SiteRef", NS).get("LocationOID")
            for sd in doc.iterfind(".//odm:SubjectData", NS)}
    assert refs == {"01-001": "LOC.01", "02-001": "LOC.02"}
