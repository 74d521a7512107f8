"""Fixtures of the web tests: a template study database with one account per role and subjects in
the states the actions need, copied for each test; an app on the copy; bearer tokens per role."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from regenheart.capture.accounts import AccountService
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.capture.workflow import WorkflowService
from regenheart.protocol import load_protocol
from regenheart.store.db import create_study_database
from regenheart.web import create_app

from ..conftest import eligible_screening_data

TODAY = dt.date(2026, 1, 1)
PASSWORD = "correct horse battery"
# Cheap argon2 parameters keep the suite fast; production uses the library defaults.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
SETUP = Actor("setup", "admin")

# username -> (role, site, printed name)
ACCOUNTS = {
    "admin1": ("admin", None, "Ada Admin"),
    "dm1": ("data_manager", None, "Dana Manager"),
    "inv1": ("investigator", "01", "Dr Ivan Vestigator"),
    "coord1": ("coordinator", "01", "Cora Ordinator"),
    "mon1": ("monitor", None, "Mona Monitor"),
    "stat1": ("statistician", None, "Stan Tistician"),
    "ro1": ("read_only", None, "Rita Reader"),
    "coord2": ("coordinator", "02", "Carl Second-Site"),
}
ROLE_USER = {role: name for name, (role, site, _) in ACCOUNTS.items() if name != "coord2"}
CATH = {"access_site": "RADIAL", "vessel": "LMCA", "timi_before": 3, "timi_after": 3, "dose_cells_1e6": 10,
        "infusion_completed": "Y", "infusion_duration_min": 15}


def two_site_protocol():
    protocol = load_protocol()
    sites = list(protocol.study.sites) + [protocol.study.sites[0].model_copy(update={"code": "02",
                                                                                     "name": "Second site"})]
    return protocol.model_copy(update={"study": protocol.study.model_copy(update={"sites": sites})})


def no_scorer(instrument, items):
    return {}, "test"


def screen(service: CaptureService, actor: Actor, code: str, site: str = "01") -> None:
    service.screen_subject(actor, code, site, "2025-01-10", "2025-01-09")
    for form, data in eligible_screening_data().items():
        service.save_form(actor, code, "SCR", form, data, visit_date="2025-01-10")


def build_study(path: Path, protocol) -> None:
    """The template study: accounts, and subjects in every state the tests act on.

    01-001 infused; open query Q1 on SCR echo.lvef_pct; SCR nyha locked.
    01-002 screened (eligibility not evaluated); 01-003 eligible (not enrolled); 02-001 at site 02.
    """
    engine = create_study_database(path, {"study": protocol.study.nct_id})
    accounts = AccountService(engine, protocol, hasher=FAST_HASHER)
    for name, (role, site, full) in ACCOUNTS.items():
        accounts.create_user(SETUP, name, role, PASSWORD, site=site, full_name=full)
    capture = CaptureService(engine, protocol, scorer=no_scorer, today=lambda: TODAY)
    workflow = WorkflowService(engine, protocol, accounts)
    coord, inv = Actor("coord1", "coordinator", "01"), Actor("inv1", "investigator", "01")
    screen(capture, coord, "01-001")
    capture.evaluate_eligibility(inv, "01-001")
    capture.enrol(inv, "01-001", "2025-01-20")
    capture.save_form(coord, "01-001", "D0", "catheterization", CATH, visit_date="2025-01-24")
    workflow.open_query(Actor("mon1", "monitor"), "01-001", "SCR", "echo", "lvef_pct", "Please confirm LVEF.")
    workflow.lock(Actor("dm1", "data_manager"), "01-001", "SCR", "nyha", confirm=True)
    screen(capture, coord, "01-002")
    screen(capture, coord, "01-003")
    capture.evaluate_eligibility(inv, "01-003")
    screen(capture, Actor("coord2", "coordinator", "02"), "02-001", site="02")
    engine.dispose()


@pytest.fixture(scope="session")
def web_protocol():
    return two_site_protocol()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory, web_protocol) -> Path:
    path = tmp_path_factory.mktemp("template") / "study.db"
    build_study(path, web_protocol)
    return path


@pytest.fixture
def db_path(tmp_path, template_db) -> Path:
    path = tmp_path / "study.db"
    shutil.copy(template_db, path)
    return path


@pytest.fixture
def app(db_path, web_protocol):
    return create_app(db_path, web_protocol, scorer=no_scorer, today=lambda: TODAY, hasher=FAST_HASHER)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def token(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def auth(client):
    """auth('coordinator') -> headers with a bearer token of that role's account (or a username)."""
    cache: dict[str, dict[str, str]] = {}

    def get(who: str) -> dict[str, str]:
        name = ROLE_USER.get(who, who)
        if name not in cache:
            cache[name] = token(client, name)
        return cache[name]
    return get
