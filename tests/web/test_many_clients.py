"""Many clients at once against a real server process: nothing acknowledged is lost, exactly one racer
wins per version, no 5xx, and the audit chain verifies. SQLite with one worker; PostgreSQL with four.

The server is started as ``regenheart serve`` in a subprocess on a free loopback port; the clients
are threads with their own bearer tokens. Request loops are bounded in count and time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from regenheart.capture.accounts import AccountService
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.protocol import load_protocol
from regenheart.store.db import create_study_database, open_study_database
from regenheart.store.reconcile import check_integrity

from .conftest import FAST_HASHER, PASSWORD, SETUP

OWN_CLIENTS = 50
RACERS = 10
SAVES_PER_CLIENT = 4
RACE_ROUNDS = 3
RACE_SUBJECT = "01-999"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(url_or_path: str) -> None:
    protocol = load_protocol()
    engine = create_study_database(url_or_path, {"study": protocol.study.nct_id or "TEST"})
    accounts = AccountService(engine, protocol, hasher=FAST_HASHER)
    for n in range(OWN_CLIENTS + RACERS):
        accounts.create_user(SETUP, f"coord{n}", "coordinator", PASSWORD, site="01", full_name=f"Coordinator {n}")
    capture = CaptureService(engine, protocol)
    coord = Actor("setup.coord", "coordinator", "01")
    for n in range(1, OWN_CLIENTS + 1):
        capture.screen_subject(coord, f"01-{n:03d}", "01", "2025-01-10", "2025-01-09")
    capture.screen_subject(coord, RACE_SUBJECT, "01", "2025-01-10", "2025-01-09")
    capture.save_form(coord, RACE_SUBJECT, "SCR", "vital_signs",
                      {"sbp_mmhg": 120, "dbp_mmhg": 80, "heart_rate_bpm": 70, "temperature_c": 36.6},
                      visit_date="2025-01-10")
    engine.dispose()


class Server:
    def __init__(self, db: str, workers: int, log: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "regenheart.cli.main", "serve", "--db", db, "--port", str(self.port),
             "--workers", str(workers)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180  # worker processes import the whole stack; slow on a busy machine
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not come up: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def _client(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    response = client.post("/api/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return client


def _vitals(sbp: int) -> dict:
    return {"sbp_mmhg": sbp, "dbp_mmhg": 80, "heart_rate_bpm": 70, "temperature_c": 36.6}


def _own_work(base: str, n: int, statuses: list[int]) -> tuple[str, int]:
    """One client saving its own subject's form several times; returns (subject, last acknowledged sbp)."""
    code = f"01-{n + 1:03d}"
    path = f"/api/subjects/{code}/forms/SCR/vital_signs"
    acknowledged, version = -1, 0
    client = _client(base, f"coord{n}")
    try:
        for k in range(SAVES_PER_CLIENT):
            sbp = 100 + n + k
            body = {"data": _vitals(sbp), "version": version}
            body |= {"visit_date": "2025-01-10"} if k == 0 else {"reason": f"re-measured ({k})"}
            response = client.put(path, json=body)
            statuses.append(response.status_code)
            if response.status_code == 200:
                acknowledged, version = sbp, response.json()["version"]
    finally:
        client.close()
    return code, acknowledged


def _race(base: str, rounds: int, statuses: list[int]) -> list[tuple[int, int]]:
    """RACERS clients read the same version and save at once; returns (winners, conflicts) per round."""
    path = f"/api/subjects/{RACE_SUBJECT}/forms/SCR/vital_signs"
    clients = [_client(base, f"coord{OWN_CLIENTS + i}") for i in range(RACERS)]
    outcome = []
    try:
        for round_ in range(rounds):
            version = clients[0].get(path).json()["version"]
            barrier = threading.Barrier(RACERS)

            def attempt(i: int, version=version, round_=round_, barrier=barrier) -> int:
                barrier.wait(timeout=30)
                body = {"data": _vitals(150 + 10 * round_ + i), "version": version, "reason": "race"}
                return clients[i].put(path, json=body).status_code

            with ThreadPoolExecutor(RACERS) as pool:
                codes = list(pool.map(attempt, range(RACERS)))
            statuses.extend(codes)
            outcome.append((codes.count(200), codes.count(409)))
    finally:
        for c in clients:
            c.close()
    return outcome


def _run(db: str, workers: int, tmp_path: Path) -> None:
    server = Server(db, workers, tmp_path / "server.log")
    statuses: list[int] = []
    try:
        with ThreadPoolExecutor(OWN_CLIENTS + 1) as pool:
            race = pool.submit(_race, server.base, RACE_ROUNDS, statuses)
            own = list(pool.map(lambda n: _own_work(server.base, n, statuses), range(OWN_CLIENTS)))
            race_outcome = race.result()
    finally:
        server.stop()
    assert not [s for s in statuses if s >= 500], "server errors"
    assert race_outcome == [(1, RACERS - 1)] * RACE_ROUNDS
    engine = open_study_database(db)
    protocol = load_protocol()
    capture = CaptureService(engine, protocol)
    reader = Actor("check", "monitor")
    for code, sbp in own:
        assert sbp > 0, f"{code}: no save acknowledged"
        view = capture.get_form(reader, code, "SCR", "vital_signs")
        assert view.data["sbp_mmhg"] == sbp and view.version == SAVES_PER_CLIENT
    assert capture.get_form(reader, RACE_SUBJECT, "SCR", "vital_signs").version == 1 + RACE_ROUNDS
    integrity = check_integrity(engine, protocol)
    assert integrity.ok, integrity.summary()
    engine.dispose()


@pytest.mark.slow
def test_many_clients_on_sqlite_one_worker(tmp_path):
    db = str(tmp_path / "study.db")
    _prepare(db)
    _run(db, 1, tmp_path)


PG_URL = os.environ.get("REGENHEART_TEST_PG_URL")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL (set REGENHEART_TEST_PG_URL)")
def test_many_clients_on_postgres_four_workers(tmp_path):
    name = f"rh_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        _prepare(url)
        _run(url, 4, tmp_path)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
