"""First use and administration without a browser (TestClient): the first administrator from the server
machine on an empty database only, the audit-trail page (filters, paging, newest first, labels, CSV) and
the administration page's sites and subject-code rule."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from regenheart.store.db import create_study_database
from regenheart.store.models import AccessLog, AuditRecord, User
from regenheart.web import create_app

from .conftest import FAST_HASHER, PASSWORD, TODAY, no_scorer
from .test_pages import csrf_of, login

LOCAL = ("127.0.0.1", 50000)


@pytest.fixture
def empty_app(tmp_path, web_protocol):
    path = tmp_path / "empty.db"
    create_study_database(path, {"study": web_protocol.study.nct_id}).dispose()
    return path, create_app(path, web_protocol, scorer=no_scorer, today=lambda: TODAY, hasher=FAST_HASHER)


def _setup_post(client: TestClient, **data):
    page = client.get("/setup")
    return client.post("/setup", data={"csrf_token": csrf_of(page.text), **data}, follow_redirects=False)


# ---------------------------------------------------------------------------------------------- first use
def test_first_visit_on_the_server_creates_the_first_administrator_once(empty_app):
    path, app = empty_app
    with TestClient(app, client=LOCAL) as c:
        first = c.get("/login", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/setup"
        mismatch = _setup_post(c, username="ada", full_name="Ada Admin", password=PASSWORD, password2=PASSWORD + "x")
        assert mismatch.status_code == 422 and "the two passwords differ" in mismatch.text
        weak = _setup_post(c, username="ada", full_name="Ada Admin", password="short", password2="short")
        assert weak.status_code == 422
        done = _setup_post(c, username="ada", full_name="Ada Admin", password=PASSWORD, password2=PASSWORD)
        assert done.status_code == 303 and done.headers["location"] == "/admin/users"
        users_page = c.get("/admin/users")  # logged in as the new administrator
        assert users_page.status_code == 200 and "Ada Admin" in users_page.text
        again = c.get("/setup")
        assert again.status_code == 403 and "already has accounts" in again.text
        assert c.get("/login").status_code == 200  # now the ordinary log-in
    engine = create_engine(f"sqlite:///{path}")
    with Session(engine) as s:
        assert [(u.username, u.role, u.site_code) for u in s.scalars(select(User))] == [("ada", "admin", None)]
        created = s.scalars(select(AuditRecord).where(AuditRecord.entity == "user")).all()
        assert created and {r.username for r in created} == {"setup:127.0.0.1"}
    engine.dispose()


def test_first_administrator_is_refused_from_another_machine(empty_app):
    path, app = empty_app
    with TestClient(app, client=("10.0.0.7", 50000)) as c:
        page = c.get("/setup")
        assert page.status_code == 403 and "only be created from the server itself" in page.text
        assert c.get("/login", follow_redirects=False).status_code == 200  # no redirect to set-up
        # a forged POST (no set-up token, remote) changes nothing
        assert c.post("/setup", data={"username": "eve", "password": PASSWORD, "password2": PASSWORD},
                      follow_redirects=False).status_code == 403
    engine = create_engine(f"sqlite:///{path}")
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(User)) == 0
    engine.dispose()


def test_setup_is_refused_once_accounts_exist_even_locally(app):
    with TestClient(app, client=LOCAL) as c:
        assert c.get("/login", follow_redirects=False).status_code == 200
        assert c.get("/setup").status_code == 403


# ---------------------------------------------------------------------------------------------- audit trail
@pytest.fixture
def dm(app) -> TestClient:
    c = TestClient(app)
    assert login(c, "dm1").status_code == 303
    return c


def _seqs(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<td data-label="#">(\d+)</td>', html)]


def test_audit_trail_is_newest_first_paged_and_labelled(dm, db_path):
    engine = create_engine(f"sqlite:///{db_path}")
    with Session(engine) as s:
        total = s.scalar(select(func.count()).select_from(AuditRecord).where(AuditRecord.subject_code == "01-001"))
        newest = s.scalar(select(func.max(AuditRecord.seq)).where(AuditRecord.subject_code == "01-001"))
    engine.dispose()
    assert total > 50  # the fixture subject has more than one page
    first = dm.get("/subjects/01-001/audit").text
    seqs = _seqs(first)
    assert len(seqs) == 50 and seqs == sorted(seqs, reverse=True) and seqs[0] == newest
    pages = -(-total // 50)
    assert f"({total} entries, page 1 of {pages}, newest first)" in first
    last = dm.get(f"/subjects/01-001/audit?page={pages}").text
    assert len(_seqs(last)) == total - 50 * (pages - 1) and max(_seqs(last)) < min(seqs)  # older entries later
    # labels, not variable names
    echo = dm.get("/subjects/01-001/audit?form=echo&field=lvef_pct").text
    assert "LV ejection fraction (biplane Simpson)" in echo and "<td data-label=\"Field\" title=\"lvef_pct\">" in echo


def test_audit_filters_by_user_date_form_and_field(dm):
    by_user = dm.get("/subjects/01-001/audit?user=inv1").text
    assert _seqs(by_user) and set(re.findall(r'<td data-label="User">(\w+) ', by_user)) == {"inv1"}
    today = dt.datetime.now(dt.UTC).date()
    assert "No entries match." in dm.get("/subjects/01-001/audit?to=2000-01-01").text
    assert _seqs(dm.get(f"/subjects/01-001/audit?from={(today - dt.timedelta(days=1)).isoformat()}").text)
    assert "No entries match." in dm.get(
        f"/subjects/01-001/audit?from={(today + dt.timedelta(days=2)).isoformat()}").text
    field = dm.get("/subjects/01-001/audit?form=catheterization&field=vessel").text
    assert len(_seqs(field)) == 1 and "(1 entry, newest first)" in field
    bad_date = dm.get("/subjects/01-001/audit?from=not-a-date")  # ignored, never a 500
    assert bad_date.status_code == 200 and _seqs(bad_date.text)


def test_audit_csv_exports_the_filtered_rows(dm, db_path):
    response = dm.get("/subjects/01-001/audit.csv?form=echo")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert 'filename="audit_01-001.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    engine = create_engine(f"sqlite:///{db_path}")
    with Session(engine) as s:
        expected = s.scalars(select(AuditRecord.seq).where(AuditRecord.subject_code == "01-001",
                                                           AuditRecord.form_code == "echo")
                             .order_by(AuditRecord.seq.desc())).all()
        logged = s.scalars(select(AccessLog).where(AccessLog.event == "export")).all()
    engine.dispose()
    assert [int(r["seq"]) for r in rows] == list(expected)
    lvef = next(r for r in rows if r["field"] == "lvef_pct" and r["entity"] == "item")
    assert lvef["field_label"] == "LV ejection fraction (biplane Simpson)" and lvef["new_value"] == "27.0"
    assert lvef["form_label"] and lvef["username"] == "coord1"
    assert any("audit trail CSV of 01-001" in (e.detail or "") for e in logged)
    page = dm.get("/subjects/01-001/audit?form=echo").text
    assert 'href="/subjects/01-001/audit.csv?form=echo"' in page


def test_audit_page_of_another_sites_subject_is_not_found(app):
    c = TestClient(app)
    login(c, "coord2")
    assert c.get("/subjects/01-001/audit").status_code == 404
    assert c.get("/subjects/01-001/audit.csv").status_code == 404


# ---------------------------------------------------------------------------------------------- administration
def test_users_page_lists_the_protocol_sites_and_the_subject_code_rule(app):
    c = TestClient(app)
    login(c, "admin1")
    page = c.get("/admin/users").text
    table = page[page.index('id="sites-table"'):]
    assert "<td>01</td>" in table and "<td>02</td>" in table
    assert "^{site}-\\d{3}$" in page and "e.g. 01-001" in page
    # site 01 has inv1 and coord1, site 02 coord2 (the other accounts see all sites)
    counts = re.findall(r"<tr><td>(0\d)</td><td>[^<]*</td><td>[^<]*</td><td>(\d+)</td></tr>", table)
    assert dict(counts) == {"01": "2", "02": "1"}
