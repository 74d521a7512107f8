"""Benchmark: durable form saves through the REST API with 50 concurrent clients.

Run: .venv/bin/python benchmarks/bench_api.py [--clients 50] [--saves 20] [--engines sqlite,pg1,pg4]
(pg needs REGENHEART_TEST_PG_URL, e.g. from ``bash scripts/postgres.sh``).

Starts ``regenheart serve`` (SQLite with one worker; PostgreSQL with one and with four workers) on a
free loopback port, lets every client save its own subject's vital-signs form ``--saves`` times
(first entry, then changes with a reason: full validation, audit chain, synchronous=FULL on SQLite),
and reports saves per second, the p50 / p95 latency of a save, the server's CPU time per save (its process
and worker processes; the load generator's own cost is kept small: one kept-alive standard-library HTTP
connection per client) and the machine's load. Afterwards every client's last save must be stored and the
audit chain must verify. Every request loop is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text

from regenheart.capture.accounts import AccountService
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.protocol import load_protocol
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database, open_study_database

sys.path.insert(0, str(Path(__file__).parent))
from _machine import core_speed_seconds, cpu_model

PASSWORD = "benchmark password 1"


def prepare(db: str, clients: int) -> None:
    protocol = load_protocol()
    engine = create_study_database(db, {"study": protocol.study.nct_id or "BENCH"})
    accounts = AccountService(engine, protocol, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    setup = Actor("bench.setup", "admin")
    capture = CaptureService(engine, protocol)
    coord = Actor("bench.coord", "coordinator", "01")
    for n in range(clients):
        accounts.create_user(setup, f"c{n}", "coordinator", PASSWORD, site="01", full_name=f"Client {n}")
        capture.screen_subject(coord, f"01-{n + 1:03d}", "01", "2025-01-10", "2025-01-09")
    engine.dispose()


def serve(db: str, workers: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "regenheart.cli.main", "serve", "--db", db, "--port", str(port),
                                "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not start")


def client_run(base: str, n: int, saves: int) -> list[float]:
    """One client: log in, then save its own subject's vital signs ``saves`` times; returns each save's latency (s).

    The standard library's HTTP client on one kept-alive connection: the load generator shares the machine
    with the server, and a heavier client (httpx: about 5 ms of CPU per request here) would take the CPU
    the server needs and be measured as the server's slowness.
    """
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)

    def call(method: str, path: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
        connection.request(method, path, json.dumps(body), {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    latencies = []
    try:
        status, token = call("POST", "/api/auth/token", {"username": f"c{n}", "password": PASSWORD}, {})
        if status != 200:
            raise SystemExit(f"log-in refused: {status} {token}")
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        version = 0
        for k in range(saves):
            body = {"data": {"sbp_mmhg": 100 + k, "dbp_mmhg": 70, "heart_rate_bpm": 60 + n % 50,
                             "temperature_c": 36.6}, "version": version}
            body |= {"visit_date": "2025-01-10"} if k == 0 else {"reason": "benchmark re-measurement"}
            t0 = time.perf_counter()
            status, answer = call("PUT", f"/api/subjects/01-{n + 1:03d}/forms/SCR/vital_signs", body, auth)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise SystemExit(f"save refused: {status} {str(answer)[:300]}")
            version = answer["version"]
    finally:
        connection.close()
    return latencies


def check_stored(db: str, clients: int, saves: int) -> None:
    """Every acknowledged save is in the database (each client's form at version ``saves``, its last value),
    and the audit chain verifies."""
    engine = open_study_database(db)
    try:
        capture, monitor = CaptureService(engine, load_protocol()), Actor("bench.check", "monitor")
        for n in range(clients):
            view = capture.get_form(monitor, f"01-{n + 1:03d}", "SCR", "vital_signs")
            if view.version != saves or view.data.get("sbp_mmhg") != 100 + saves - 1:
                raise SystemExit(f"client {n}: stored version {view.version}, sbp {view.data.get('sbp_mmhg')}")
        report = verify_chain(engine)
        if not report.ok:
            raise SystemExit(f"audit chain does not verify: {report.problem}")
    finally:
        engine.dispose()


def settle(pid: int, timeout: float = 120) -> None:
    """Wait until the server is idle: with several workers the first answers while the others still import."""
    deadline = time.monotonic() + timeout
    before = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = tree_cpu_seconds(pid)
        if now - before < 0.1:  # less than 10 % of a core over the last second
            return
        before = now


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants so far (Linux /proc; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        own = int(entry.parent.name)
        children.setdefault(int(fields[1]), []).append(own)
        cpu[own] = (int(fields[11]) + int(fields[12])) / tick
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += cpu.get(current, 0.0)
        stack.extend(children.get(current, []))
    return total


def run(db: str, workers: int, clients: int, saves: int) -> dict[str, float]:
    prepare(db, clients)
    process, base = serve(db, workers)
    try:
        settle(process.pid)
        cpu0, t0 = tree_cpu_seconds(process.pid), time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = [x for part in pool.map(lambda n: client_run(base, n, saves), range(clients)) for x in part]
        elapsed, cpu = time.perf_counter() - t0, tree_cpu_seconds(process.pid) - cpu0
    finally:
        process.terminate()
        process.wait(timeout=30)
    check_stored(db, clients, saves)
    quantiles = statistics.quantiles(latencies, n=100)
    return {"saves": len(latencies), "seconds": elapsed, "saves_per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * quantiles[49], "p95_ms": 1000 * quantiles[94],
            "cpu_ms": 1000 * cpu / len(latencies), "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--engines", default="sqlite,pg1,pg4")
    args = parser.parse_args()
    pg = os.environ.get("REGENHEART_TEST_PG_URL")
    print(f"# API throughput: {args.clients} clients x {args.saves} saves; {cpu_model()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}, core speed probe {core_speed_seconds():.2f} s (see _machine.py)")
    print("| engine | workers | saves | seconds | saves/s | p50 ms | p95 ms | server CPU ms/save | load |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for engine in args.engines.split(","):
        workers = int(engine[2:]) if engine.startswith("pg") else 1
        if engine.startswith("pg"):
            if not pg:
                print(f"| {engine} | skipped: set REGENHEART_TEST_PG_URL | | | | | | | |")
                continue
            name = f"rh_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(pg, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                r = run(pg.rsplit("/", 1)[0] + f"/{name}", workers, args.clients, args.saves)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            label = "PostgreSQL"
        else:
            with tempfile.TemporaryDirectory() as tmp:
                r = run(str(Path(tmp) / "study.db"), 1, args.clients, args.saves)
            label = "SQLite (WAL, synchronous=FULL)"
        print(f"| {label} | {workers} | {r['saves']} | {r['seconds']:.1f} | {r['saves_per_s']:.0f} | "
              f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['cpu_ms']:.1f} | {r['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
