"""Export from the browser: who may export, what the zip holds (CSV per form, REDCap, ADaM XPT),
site restriction, codes or labels, the access log, and the audit reconciliation first."""

from __future__ import annotations

import io
import re
import sqlite3
import zipfile

import pandas as pd
import pyreadstat
import pytest

from regenheart.capture.permissions import Actor
from regenheart.exchange.redcap_format import read_dictionary

from .conftest import PASSWORD, SETUP
from .test_pages import login

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def export(client, **form):
    page = client.get("/export")
    assert page.status_code == 200, page.text
    data = {"csrf_token": TOKEN.search(page.text).group(1), "format": "csv", "site": "", "values": "codes"} | form
    return client.post("/export", data=data)


def unzip(response) -> dict[str, bytes]:
    assert response.status_code == 200, response.text[:2000]
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        return {name.split("/", 1)[1]: zf.read(name) for name in zf.namelist()}


def frame(files, name) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(files[name]), dtype=str, keep_default_na=False)


@pytest.mark.parametrize("username", ["coord1", "mon1", "ro1", "inv1"])
def test_roles_without_export_permission_get_403(client, username):
    login(client, username)
    assert client.get("/export").status_code == 403
    assert 'href="/export"' not in client.get("/subjects").text  # no menu entry either
    token = TOKEN.search(client.get("/subjects").text).group(1)
    assert client.post("/export", data={"csrf_token": token, "format": "csv"}).status_code == 403


def test_csv_export_one_file_per_form_with_codes_or_labels(client, app):
    login(client, "dm1")
    assert 'href="/export"' in client.get("/subjects").text
    files = unzip(export(client, format="csv"))
    protocol = app.state.ctx.protocol
    assert {f"{form}.csv" for form in protocol.forms} <= set(files)
    assert {"subjects.csv", "adverse_events.csv", "EXPORT_README.txt"} <= set(files)
    demo = frame(files, "demographics.csv")
    assert sorted(demo["subject_code"]) == ["01-001", "01-002", "01-003", "02-001"]
    assert list(demo.columns[:8]) == ["subject_code", "site_code", "visit_code", "visit_date", "age_years", "sex",
                                      "height_cm", "weight_kg"]
    assert set(demo["sex"]) == {"M"} and set(demo["visit_date"]) == {"2025-01-10"}
    nyha = frame(files, "nyha.csv").set_index("subject_code")
    assert nyha.loc["01-001", "nyha_class"] == "3" and nyha.loc["01-001", "locked"] == "True"
    echo = frame(files, "echo.csv").set_index("subject_code")
    assert echo.loc["01-001", "lvef_pct"] == "27.0" and echo.loc["01-001", "form_status"] == "complete"
    labelled = unzip(export(client, format="csv", values="labels"))
    assert set(frame(labelled, "demographics.csv")["sex"]) == {"Male"}  # code list 'sex': M = Male
    assert frame(labelled, "nyha.csv").set_index("subject_code").loc["01-001", "nyha_class"] == "III"
    assert "values: labels" in labelled["EXPORT_README.txt"].decode()


def test_export_is_recorded_in_the_access_log(client, app):
    login(client, "stat1")
    unzip(export(client, format="csv", site="02"))
    events = app.state.ctx.accounts.access_log(Actor("admin1", "admin"), username="stat1")
    exported = [e for e in events if e.event == "export"]
    assert len(exported) == 1
    detail = exported[0].detail
    assert "format=csv" in detail and "site=02" in detail and "values=codes" in detail
    assert re.search(r"files=\d+", detail) and "subjects=1" in detail
    assert exported[0].role == "statistician" and exported[0].channel == "web" and exported[0].ts_utc


def test_site_restricted_account_exports_its_site_only(client, app):
    app.state.ctx.accounts.create_user(SETUP, "dm02", "data_manager", PASSWORD, site="02", full_name="Site Two DM")
    login(client, "dm02")
    files = unzip(export(client, format="csv", site=""))
    assert sorted(frame(files, "demographics.csv")["subject_code"]) == ["02-001"]
    assert export(client, format="csv", site="01").status_code == 403
    page = client.get("/export").text
    assert '<option value="">all sites</option>' not in page


def test_unknown_format_or_site_is_a_clear_422(client):
    login(client, "dm1")
    response = export(client, format="sas7bdat")
    assert response.status_code == 422 and "format &#39;sas7bdat&#39; is not one of csv, redcap, sdtm, adam" in response.text
    response = export(client, site="77")
    assert response.status_code == 422 and "site &#39;77&#39; is not a site of the study" in response.text


def test_redcap_export_records_and_dictionary(client, tmp_path):
    login(client, "dm1")
    files = unzip(export(client, format="redcap", site="01"))
    assert {"data_dictionary.csv", "records.csv", "events.csv", "instrument_event_mapping.csv"} <= set(files)
    (tmp_path / "dd.csv").write_bytes(files["data_dictionary.csv"])
    fields = read_dictionary(tmp_path / "dd.csv")  # the reader of REDCap dictionaries accepts it
    assert any(f.field_name == "sex" and f.field_type == "radio" for f in fields)
    records = frame(files, "records.csv")
    assert set(records["record_id"]) == {"01-001", "01-002", "01-003"}  # site 01 only
    labelled = frame(unzip(export(client, format="redcap", site="01", values="labels")), "records.csv")
    assert set(records["sex"]) - {""} == {"M"} and set(labelled["sex"]) - {""} == {"Male"}


def test_adam_export_is_readable_sas_transport(client, tmp_path):
    login(client, "dm1")
    files = unzip(export(client, format="adam"))
    assert {"adsl.xpt", "adsl.csv", "adeff.xpt", "adae.xpt", "adpse.xpt"} <= {n.lower() for n in files}
    name = next(n for n in files if n.lower() == "adsl.xpt")
    (tmp_path / "adsl.xpt").write_bytes(files[name])
    adsl, meta = pyreadstat.read_xport(str(tmp_path / "adsl.xpt"))
    assert sorted(adsl["USUBJID"].str[-6:]) == ["01-001", "01-002", "01-003", "02-001"]
    assert meta.table_name.upper() == "ADSL"


def test_export_refused_when_the_data_do_not_reconcile_with_the_audit_trail(client, app, db_path):
    with sqlite3.connect(db_path) as con:  # a value changed behind the application's back
        con.execute("UPDATE item_values SET value = '31.0' WHERE field = 'lvef_pct'")
    login(client, "dm1")
    response = export(client, format="csv")
    assert response.status_code == 409
    assert "cannot be exported" in response.text and "lvef_pct" in response.text
    assert "Traceback" not in response.text
    events = app.state.ctx.accounts.access_log(Actor("admin1", "admin"), username="dm1")
    assert [e.event for e in events if e.event.startswith("export")] == ["export_refused"]


def test_sdtm_export_is_sas_transport_per_domain(client, tmp_path):
    login(client, "dm1")
    files = unzip(export(client, format="sdtm", site="01"))
    assert {"dm.xpt", "ds.xpt"} <= set(files)
    (tmp_path / "dm.xpt").write_bytes(files["dm.xpt"])
    dm, meta = pyreadstat.read_xport(str(tmp_path / "dm.xpt"))
    assert sorted(dm["USUBJID"].str[-6:]) == ["01-001", "01-002", "01-003"]  # site 01 only
    assert meta.table_name.upper() == "DM"
    assert sorted(dm["SEX"]) == ["M", "M", "M"]


def test_a_missing_data_code_is_exported_as_the_code(client, app):
    ctx = app.state.ctx
    ctx.capture.save_form(Actor("coord1", "coordinator", "01"), "01-001", "SCR", "labs",
                          {"ntprobnp_pg_ml": {"missing": "ND", "reason": "sample haemolysed"}, "creatinine_mg_dl": 1.1})
    login(client, "dm1")
    for values in ("codes", "labels"):
        labs = frame(unzip(export(client, format="csv", values=values)), "labs.csv").set_index("subject_code")
        assert labs.loc["01-001", "ntprobnp_pg_ml"] == "ND" and labs.loc["01-001", "creatinine_mg_dl"] == "1.1"
        assert labs.loc["01-001", "form_status"] == "complete"
    readme = unzip(export(client, format="csv"))["EXPORT_README.txt"].decode()
    assert "missing-data codes in place of a value" in readme and "ND, Not done | UNK, Unknown" in readme
