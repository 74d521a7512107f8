"""Queries worklist: study-wide numbering, filters (site, subject, visit, form, status, age), sorting,
the open-query count in the menu and the CSV export of the filtered list."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from regenheart.capture.permissions import Actor
from regenheart.store.db import open_study_database
from regenheart.web import dashboard as dash

from .conftest import TODAY
from .test_pages import login

MON = Actor("mon1", "monitor")


@pytest.fixture
def engine(db_path, app):
    """The web test study with three queries: Q-1 on 01-001 SCR echo (fixture), Q-2 on 02-001 SCR nyha,
    Q-3 on 01-001 D0 catheterization (answered)."""
    ctx = app.state.ctx
    ctx.workflow.open_query(MON, "02-001", "SCR", "nyha", "nyha_class", "Class?")
    ctx.workflow.open_query(MON, "01-001", "D0", "catheterization", "dose_cells_1e6", "Dose?")
    ctx.workflow.answer_query(Actor("coord1", "coordinator", "01"), "01-001", 2, "Checked: 10.")
    engine = open_study_database(db_path)
    yield engine
    engine.dispose()


def numbers(rows):
    return [(r["number"], r["subject_code"], r["seq"]) for r in rows]


def test_study_wide_numbers_are_the_same_for_every_user(engine, web_protocol):
    everyone = dash.query_worklist(engine, web_protocol, MON, TODAY, status=None)
    assert numbers(everyone) == [(1, "01-001", 1), (2, "02-001", 1), (3, "01-001", 2)]
    site1 = dash.query_worklist(engine, web_protocol, Actor("coord1", "coordinator", "01"), TODAY, status=None)
    assert numbers(site1) == [(1, "01-001", 1), (3, "01-001", 2)]  # numbers do not restart per subject or site


def test_filters(engine, web_protocol):
    def q(**kw):
        return [r["number"] for r in dash.query_worklist(engine, web_protocol, MON, TODAY, **kw)]
    assert q(status="open") == [1, 2]
    assert q(status="answered") == [3]
    assert q(status="unresolved") == [1, 2, 3]
    assert q(status="closed") == []
    assert q(site="02") == [2]
    assert q(subject="01-0") == [1, 3]
    assert q(visit="D0") == [3]
    assert q(form="echo") == [1]
    # age: every query was opened today (wall clock); 10 days later each has been open 10 days
    opened = dt.date.fromisoformat(dash.query_worklist(engine, web_protocol, MON, TODAY)[0]["opened_utc"][:10])
    later = opened + dt.timedelta(days=10)
    rows = dash.query_worklist(engine, web_protocol, MON, later, min_age=10)
    assert [r["age_days"] for r in rows] == [10, 10, 10]
    assert dash.query_worklist(engine, web_protocol, MON, later, min_age=11) == []


def test_sorting(engine, web_protocol):
    def order(sort, descending=False):
        return [r["number"] for r in dash.query_worklist(engine, web_protocol, MON, TODAY, sort=sort,
                                                         descending=descending)]
    assert order("number", True) == [3, 2, 1]
    assert order("site") == [1, 3, 2]
    assert order("visit") == [1, 2, 3]  # SCR before D0
    assert order("status") == [3, 1, 2]  # answered < open
    assert order("subject") == [1, 3, 2]


def test_menu_count_and_page(client, engine):
    login(client, "mon1")
    html = client.get("/subjects").text
    assert re.search(r'id="nav-queries">Queries <span class="count"[^>]*>3</span>', html)
    login(client, "coord2")
    html = client.get("/queries").text
    assert re.search(r'id="nav-queries">Queries <span class="count"[^>]*>1</span>', html)
    assert 'data-number="2"' in html and 'data-number="1"' not in html
    login(client, "mon1")
    html = client.get("/queries?visit=D0&status=").text
    assert "Q-3" in html and "Q-1<" not in html and 'data-status="answered"' in html
    assert client.get("/queries?age=abc&status=bogus&sort=x").status_code == 200  # ignored, not a 500


def test_csv_of_the_filtered_list(client, engine):
    login(client, "mon1")
    html = client.get("/queries?site=01&status=").text
    assert 'href="/queries.csv?site=01&amp;status="' in html
    response = client.get("/queries.csv?site=01&status=")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(r["number"], r["subject_code"], r["site"], r["status"]) for r in rows] == [
        ("Q-1", "01-001", "01", "open"), ("Q-3", "01-001", "01", "answered")]
    assert rows[1]["last_text"] == "Checked: 10." and rows[1]["last_by"] == "coord1"
    # a site account cannot widen its list through the query string (another site's code is ignored)
    login(client, "coord2")
    rows = list(csv.DictReader(io.StringIO(client.get("/queries.csv?site=01&status=").content.decode("utf-8-sig"))))
    assert [r["subject_code"] for r in rows] == ["02-001"]
    rows = list(csv.DictReader(io.StringIO(client.get("/queries.csv?status=").content.decode("utf-8-sig"))))
    assert [r["number"] for r in rows] == ["Q-2"]


def test_worklist_actions_still_work(client, engine):
    login(client, "mon1")
    page = client.get("/queries").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/subjects/01-001/queries/2/close", data={"csrf_token": token, "text": "ok",
                                                                     "return_to": "/queries?visit=D0"})
    assert response.status_code == 200 and str(response.url).endswith("/queries?visit=D0")
    assert "Query 2 is now closed" in response.text
