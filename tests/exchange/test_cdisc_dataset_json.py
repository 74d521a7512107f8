"""Dataset-JSON 1.1: valid against CDISC's JSON schema, itemOIDs equal the Define's ItemDef OIDs, ADaM dates
as the specification says, and CDISC's own dm.json reproduced from the same data (dm.xpt)."""

from __future__ import annotations

import json

import jsonschema
import pyreadstat
import pytest
from tests.conftest import SHARED
from tests.exchange import _cdisc_data as data

from regenheart.derive.datasets import Dataset, Variable
from regenheart.exchange.cdisc.ct import default_terminology
from regenheart.exchange.cdisc.dataset_json import dataset_json, write_dataset_json
from regenheart.exchange.cdisc.define import ODM_NS, build_define

SCHEMA = json.loads((SHARED / "schemas" / "dataset-json-1.1" / "dataset.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft201909Validator(SCHEMA)
CREATED = "2026-01-01T10:00:00Z"


@pytest.mark.parametrize("make", [data.dm, data.cv, data.ae, data.adsl, data.adeff])
def test_valid_against_the_schema_and_written_in_spec_order(make, tmp_path):
    ds = make()
    path = write_dataset_json(ds, tmp_path / "x.json", created_utc=CREATED, study_oid="STUDY.TEST01",
                              metadata_version_oid="MDV.X", originator="regenheart", source_system=("regenheart", "0"))
    doc = json.loads(path.read_text(encoding="utf-8"))
    errors = sorted(VALIDATOR.iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]
    assert list(doc)[:2] == ["datasetJSONCreationDateTime", "datasetJSONVersion"]
    assert list(doc)[-6:] == ["itemGroupOID", "records", "name", "label", "columns", "rows"]
    assert doc["datasetJSONVersion"] == "1.1.0" and doc["itemGroupOID"] == f"IG.{ds.name}"
    assert doc["records"] == len(ds.records) == len(doc["rows"])
    assert [c["name"] for c in doc["columns"]] == [v.name for v in ds.variables]


@pytest.mark.parametrize(("standard", "datasets"), [("SDTM", data.sdtm), ("ADaM", data.adam)])
def test_item_oids_are_the_define_item_oids(standard, datasets):
    sets = datasets()
    tree = build_define(sets.values(), standard, data.STUDY, default_terminology())
    mdv = tree.getroot()[0][1]
    for ds in sets.values():
        group = mdv.find(f"{{{ODM_NS}}}ItemGroupDef[@OID='IG.{ds.name}']")
        refs = [r.get("ItemOID") for r in group.findall(f"{{{ODM_NS}}}ItemRef")]
        doc = dataset_json(ds, created_utc=CREATED)
        assert [c["itemOID"] for c in doc["columns"]] == refs
        for column in doc["columns"]:
            item = mdv.find(f"{{{ODM_NS}}}ItemDef[@OID='{column['itemOID']}']")
            assert item.get("Name") == column["name"]
            if column["dataType"] == "string":
                assert int(item.get("Length")) == column["length"]


def test_adam_dates_types_keys_and_missing_values():
    doc = dataset_json(data.adsl(), created_utc=CREATED)
    col = {c["name"]: c for c in doc["columns"]}
    assert col["TRTSDT"] == {"itemOID": "IT.ADSL.TRTSDT", "name": "TRTSDT",
                             "label": "Date of First Exposure to Treatment", "dataType": "date",
                             "targetDataType": "integer", "displayFormat": "DATE9."}
    assert col["AGE"]["dataType"] == "integer" and col["BMIBL"]["dataType"] == "float"
    assert col["STUDYID"]["keySequence"] == 1 and col["USUBJID"]["keySequence"] == 2
    assert col["USUBJID"]["length"] == len("TEST01-001")
    names = [c["name"] for c in doc["columns"]]
    last = dict(zip(names, doc["rows"][2], strict=True))
    assert last["TRTSDT"] is None and last["BMIBL"] is None and last["TRT01P"] is None
    first = dict(zip(names, doc["rows"][0], strict=True))
    assert first["TRTSDT"] == "2024-01-10" and first["AGE"] == 54 and first["BMIBL"] == 26.4
    sdtm = dataset_json(data.dm(), created_utc=CREATED)
    rf = next(c for c in sdtm["columns"] if c["name"] == "RFSTDTC")
    assert rf["dataType"] == "date" and "targetDataType" not in rf


def test_cdisc_dm_example_reproduced_from_its_xpt():
    """CDISC built dm.json from dm.xpt; the same data and column metadata give the same rows."""
    example = json.loads((SHARED / "examples" / "dataset-json-1.1" / "sdtm" / "dm.json").read_text(encoding="utf-8"))
    frame, _ = pyreadstat.read_xport(str(SHARED / "examples" / "dataset-json-1.1" / "sdtm" / "dm.xpt"))
    kinds = {"string": "text", "integer": "integer", "date": "date", "datetime": "datetime", "float": "float"}
    variables = [Variable(c["name"], c["label"], kinds[c["dataType"]], length=c.get("length"))
                 for c in example["columns"]]
    keys = [c["name"] for c in sorted(example["columns"], key=lambda c: c.get("keySequence", 99))
            if "keySequence" in c]
    ds = Dataset("DM", example["label"], "SDTM", "One record per subject", "SPECIAL PURPOSE", keys, variables, frame)
    mine = dataset_json(ds, created_utc=example["datasetJSONCreationDateTime"])
    assert mine["columns"] == example["columns"]
    # CDISC writes empty character values as "" where SAS had blanks; regenheart writes null (both valid).
    normalise = [["" if v is None else v for v in row] for row in mine["rows"]]
    assert normalise == example["rows"]
