"""`regenheart import --draft-mapping` for every format, and the protocol an import works with."""

from __future__ import annotations

from tests.conftest import SHARED
from typer.testing import CliRunner

from regenheart.cli.main import app
from regenheart.exchange.mapping import Mapping
from regenheart.store.db import create_study_database

REDCAP_PROJECT_XML = SHARED / "examples" / "redcap" / "redcapr-simple" / "project.xml"
CLINICAL_DATA_ONLY = SHARED / "examples" / "odm-1.3.2" / "odmlib-test_clinical_data_01.xml"


def test_draft_mapping_from_odm_metadata_loads_as_a_mapping(tmp_path, protocol):
    db = tmp_path / "study.db"
    create_study_database(db, {"study": protocol.study.nct_id}).dispose()
    draft = tmp_path / "draft.yaml"
    result = CliRunner().invoke(app, ["import", str(REDCAP_PROJECT_XML), "--db", str(db), "--format", "odm",
                                      "--draft-mapping", str(draft)])
    assert result.exit_code == 0, result.output
    text = draft.read_text()
    assert "REVIEW EVERY LINE" in text and "height" in text  # the project's fields are listed for review
    Mapping.load(draft, protocol)


def test_draft_mapping_from_odm_without_metadata_says_why(tmp_path, protocol):
    db = tmp_path / "study.db"
    create_study_database(db, {"study": protocol.study.nct_id}).dispose()
    result = CliRunner().invoke(app, ["import", str(CLINICAL_DATA_ONLY), "--db", str(db), "--format", "odm",
                                      "--draft-mapping", str(tmp_path / "draft.yaml")])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "no ODM metadata" in output and "Traceback" not in output
    assert not (tmp_path / "draft.yaml").exists()
