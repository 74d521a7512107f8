"""Concealed randomization: list generation (balance, ratio, reproducibility), taking slots inside the
enrolment transaction (audited, never twice, also under concurrent enrolments on SQLite and
PostgreSQL), export for the statistician, and that no site user can read the list anywhere."""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections import Counter, defaultdict

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from regenheart.capture import randomization as rz
from regenheart.capture.errors import PermissionDenied, StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.protocol import ProtocolError, load_protocol
from regenheart.protocol.loader import default_protocol_text, parse_protocol
from regenheart.protocol.models import RandomizationScheme
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database
from regenheart.store.models import AuditRecord, RandomizationList, RandomizationSlot, Subject
from regenheart.store.snapshot import take_snapshot

from ..conftest import COORDINATOR, INVESTIGATOR, eligible_screening_data

STATISTICIAN = Actor("stat1", "statistician")
ADMIN = Actor("admin", "admin")
TODAY = dt.date(2026, 1, 1)


@pytest.fixture(scope="module")
def rct_protocol():
    return load_protocol().model_copy(update={"active_protocol_version": "1.0"})


@pytest.fixture
def rct_service(engine, rct_protocol):
    return CaptureService(engine, rct_protocol, today=lambda: TODAY)


def screen_eligible(service: CaptureService, code: str, lvef: float = 27.0) -> None:
    service.screen_subject(COORDINATOR, code, "01", "2025-01-10", "2025-01-09")
    for form, data in eligible_screening_data().items():
        if form == "echo":
            data = {**data, "lvef_pct": lvef}
        service.save_form(COORDINATOR, code, "SCR", form, data, visit_date="2025-01-10")
    assert service.evaluate_eligibility(INVESTIGATOR, code).eligible


def audit_count(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(AuditRecord))


# ------------------------------------------------------------------ pure list generation
def _blocks(slots):
    by = defaultdict(list)
    for s in slots:
        by[(s.stratum, s.block)].append(s)
    return by


@pytest.mark.parametrize("ratio,sizes", [({"MSC": 1, "CTRL": 1}, [2, 4]), ({"MSC": 2, "CTRL": 1}, [3, 6])])
def test_every_block_is_balanced_and_the_ratio_is_exact_at_block_ends(ratio, sizes):
    scheme = RandomizationScheme(method="permuted_blocks", ratio=ratio, block_sizes=sizes, slots_per_stratum=60,
                                 unblinded_roles=["statistician"])
    strata = ["site=01; lvef=LO", "site=01; lvef=HI", "site=02; lvef=LO"]
    unit = sum(ratio.values())
    for seed in range(25):
        slots = rz.plan_allocation(scheme, strata, seed)
        assert {s.stratum for s in slots} == set(strata)
        for (stratum, block), members in _blocks(slots).items():
            size = members[0].block_size
            assert size in sizes and len(members) == size  # every block complete
            assert Counter(m.arm_code for m in members) == {a: r * size // unit for a, r in ratio.items()}
        for stratum in strata:
            seq = sorted((s for s in slots if s.stratum == stratum), key=lambda s: s.slot)
            assert [s.slot for s in seq] == list(range(1, len(seq) + 1))
            assert 60 <= len(seq) < 60 + max(sizes)
            counts: Counter = Counter()
            for i, s in enumerate(seq):
                counts[s.arm_code] += 1
                if i + 1 == len(seq) or seq[i + 1].block != s.block:  # end of a block: exact ratio
                    n = i + 1
                    assert dict(counts) == {a: r * n // unit for a, r in ratio.items()}
    # block sizes really vary (both sizes are used) and the order within blocks is random
    sizes_seen = Counter(s.block_size for s in rz.plan_allocation(scheme, strata, 1))
    assert set(sizes_seen) == set(sizes)


def test_same_seed_same_list_other_seed_other_list():
    scheme = load_protocol().protocol_version("1.0").randomization
    strata = rz.all_strata(load_protocol(), scheme)
    assert strata == ["site=01; lvef_stratum=LVEF<=25", "site=01; lvef_stratum=LVEF>25"]
    a, b = rz.plan_allocation(scheme, strata, 7), rz.plan_allocation(scheme, strata, 7)
    assert a == b and rz.list_digest(a) == rz.list_digest(b)
    c = rz.plan_allocation(scheme, strata, 8)
    assert [s.arm_code for s in a] != [s.arm_code for s in c]
    # strata draw from independent streams: adding a stratum leaves the others' lists unchanged
    d = rz.plan_allocation(scheme, [*strata, "site=02; lvef_stratum=LVEF>25"], 7)
    assert [s for s in d if s.stratum in strata] == a


def test_stratum_from_site_and_screening_rule():
    scheme = load_protocol().protocol_version("1.0").randomization
    assert rz.subject_stratum(scheme, "01", {"lvef_pct": 25.0}) == "site=01; lvef_stratum=LVEF<=25"
    assert rz.subject_stratum(scheme, "01", {"lvef_pct": 25.1}) == "site=01; lvef_stratum=LVEF>25"
    with pytest.raises(ValidationFailed, match="lvef_pct"):
        rz.subject_stratum(scheme, "01", {})


# ------------------------------------------------------------------ protocol errors
def _document():
    return yaml.safe_load(default_protocol_text())


def test_randomized_version_without_scheme_is_a_protocol_error_with_path():
    doc = _document()
    del doc["protocol_versions"][0]["randomization"]
    with pytest.raises(ProtocolError) as exc:
        parse_protocol(doc, "study.yaml")
    assert any(i.path == "protocol_versions[0]" and "randomization" in i.message for i in exc.value.issues)
    assert "study.yaml" in str(exc.value)


@pytest.mark.parametrize("change,needle", [
    (lambda r: r.update(block_sizes=[3]), "not positive multiples of the ratio sum 2"),
    (lambda r: r.update(ratio={"MSC": 1, "PLACEBO": 1}), "randomization.ratio names arms"),
    (lambda r: r["stratification"][1].update(rule="lvef_percent <= 25"), "lvef_percent is not a field"),
    (lambda r: r["stratification"][1].update(if_false="LVEF<=25"), "two different level names"),
    (lambda r: r["stratification"][1].update(rule="lvef_pct <= "), "invalid rule"),
])
def test_malformed_scheme_is_refused_with_its_path(change, needle):
    doc = _document()
    change(doc["protocol_versions"][0]["randomization"])
    with pytest.raises(ProtocolError) as exc:
        parse_protocol(doc, "study.yaml")
    assert needle in str(exc.value)
    assert "protocol_versions" in str(exc.value)


def test_single_arm_version_has_no_list(engine, protocol):
    with pytest.raises(StateError, match="single arm"):
        rz.generate_list(engine, protocol, STATISTICIAN, seed=1)


# ------------------------------------------------------------------ generation in the database
def test_generate_stores_the_list_once_and_refuses_a_second_time(engine, rct_protocol):
    made = rz.generate_list(engine, rct_protocol, STATISTICIAN, seed=42)
    assert made.n_slots >= 2 * 60 and len(made.strata) == 2
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(RandomizationSlot)) == made.n_slots
        header = s.scalars(select(RandomizationList)).one()
        assert header.generated_by == "stat1" and header.list_sha256 == made.sha256
    expected = rz.plan_allocation(rct_protocol.protocol_version("1.0").randomization, made.strata, 42)
    assert rz.list_digest(expected) == made.sha256  # stored list = the pure plan of that seed
    before = audit_count(engine)
    with pytest.raises(StateError, match="already has an allocation list .* nothing was changed"):
        rz.generate_list(engine, rct_protocol, ADMIN, seed=43)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(RandomizationSlot)) == made.n_slots
        assert s.scalar(select(func.count()).select_from(RandomizationList)) == 1
    assert audit_count(engine) == before
    assert verify_chain(engine).ok


@pytest.mark.parametrize("actor", [COORDINATOR, INVESTIGATOR, Actor("dm", "data_manager"), Actor("m", "monitor"),
                                   Actor("site-stat", "statistician", "01")])
def test_only_unblinded_roles_without_a_site_generate_or_export(engine, rct_protocol, actor):
    with pytest.raises(PermissionDenied):
        rz.generate_list(engine, rct_protocol, actor, seed=1)
    rz.generate_list(engine, rct_protocol, ADMIN, seed=1)
    with pytest.raises(PermissionDenied):
        rz.export_list(engine, actor, rct_protocol)


def test_allocation_tables_refuse_changes_at_the_database_level(engine, rct_protocol):
    rz.generate_list(engine, rct_protocol, ADMIN, seed=1)
    for statement in ("UPDATE randomization_slots SET arm_code = CASE arm_code WHEN 'CTRL' THEN 'MSC' ELSE 'CTRL' END",
                      "DELETE FROM randomization_slots", "UPDATE randomization_lists SET seed = '2'"):
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(statement))


# ------------------------------------------------------------------ enrolment takes the slot
def test_enrolment_takes_the_next_slot_of_the_stratum_and_audits_it(engine, rct_service, rct_protocol):
    screen_eligible(rct_service, "01-001", lvef=22.0)
    with pytest.raises(StateError, match="no allocation list yet"):
        rct_service.enrol(INVESTIGATOR, "01-001", "2025-01-15")
    rz.generate_list(engine, rct_protocol, STATISTICIAN, seed=5)
    plan = rz.plan_allocation(rct_protocol.protocol_version("1.0").randomization,
                              rz.all_strata(rct_protocol, rct_protocol.protocol_version("1.0").randomization), 5)
    low = [s for s in plan if s.stratum == "site=01; lvef_stratum=LVEF<=25"]
    high = [s for s in plan if s.stratum == "site=01; lvef_stratum=LVEF>25"]
    with pytest.raises(ValidationFailed, match="cannot be entered"):
        rct_service.enrol(INVESTIGATOR, "01-001", "2025-01-15", arm_code="MSC")
    arm = rct_service.enrol(INVESTIGATOR, "01-001", "2025-01-15")
    assert arm == low[0].arm_code
    for i, code in enumerate(("01-002", "01-003")):
        screen_eligible(rct_service, code, lvef=30.0)
        assert rct_service.enrol(INVESTIGATOR, code, "2025-01-16") == high[i].arm_code
    with Session(engine) as s:
        taken = s.execute(select(Subject.subject_code, RandomizationSlot.stratum, RandomizationSlot.slot,
                                 RandomizationSlot.used_by)
                          .join(Subject, Subject.id == RandomizationSlot.subject_id)
                          .order_by(Subject.subject_code)).all()
        assert [tuple(r) for r in taken] == [("01-001", low[0].stratum, 1, "inv1"),
                                             ("01-002", high[0].stratum, 1, "inv1"),
                                             ("01-003", high[1].stratum, 2, "inv1")]
        entries = s.scalars(select(AuditRecord).where(AuditRecord.action == "randomize",
                                                      AuditRecord.subject_code == "01-001")).all()
        assert {e.field: e.new_value for e in entries} == {"stratum": f'"{low[0].stratum}"', "slot": "1",
                                                           "arm_code": f'"{arm}"'}
        assert all(e.username == "inv1" and e.ts_utc for e in entries)
    assert verify_chain(engine).ok


def test_control_arm_day0_is_the_randomization_date(engine, rct_service, rct_protocol):
    rz.generate_list(engine, rct_protocol, STATISTICIAN, seed=5)
    arms = {}
    for i in range(1, 7):
        code = f"01-{i:03d}"
        screen_eligible(rct_service, code)
        arms[code] = rct_service.enrol(INVESTIGATOR, code, "2025-01-15")
    control = next(c for c, a in arms.items() if a == "CTRL")
    cell = next(c for c, a in arms.items() if a == "MSC")
    with Session(engine) as s:
        subjects = {x.subject_code: x for x in s.scalars(select(Subject))}
    assert subjects[control].infusion_date == dt.date(2025, 1, 15) and subjects[control].status == "enrolled"
    assert subjects[cell].infusion_date is None  # the cell arm's day 0 waits for the infusion
    rct_service.save_form(COORDINATOR, control, "M1", "nyha", {"nyha_class": 3}, visit_date="2025-02-14")
    with Session(engine) as s:
        visit = next(v for v in s.scalars(select(Subject).where(Subject.subject_code == control)).one().visits
                     if v.visit_code == "M1")
        assert visit.study_day == 30 and visit.in_window


def test_exhausted_stratum_is_a_clear_error(engine, rct_protocol, tmp_path):
    scheme = rct_protocol.protocol_version("1.0").randomization.model_copy(update={"slots_per_stratum": 2,
                                                                                   "block_sizes": [2]})
    versions = [v.model_copy(update={"randomization": scheme}) if v.version == "1.0" else v
                for v in rct_protocol.protocol_versions]
    small = rct_protocol.model_copy(update={"protocol_versions": versions})
    service = CaptureService(engine, small, today=lambda: TODAY)
    rz.generate_list(engine, small, STATISTICIAN, seed=3)
    for code in ("01-001", "01-002", "01-003"):
        screen_eligible(service, code)
    service.enrol(INVESTIGATOR, "01-001", "2025-01-15")
    service.enrol(INVESTIGATOR, "01-002", "2025-01-15")
    with pytest.raises(StateError, match="no unused slot left"):
        service.enrol(INVESTIGATOR, "01-003", "2025-01-15")
    with Session(engine) as s:  # nothing half-written: still eligible, no slot
        assert s.scalars(select(Subject.status).where(Subject.subject_code == "01-003")).one() == "eligible"


def test_export_gives_the_unblinded_list_with_what_was_used(engine, rct_service, rct_protocol, tmp_path):
    rz.generate_list(engine, rct_protocol, STATISTICIAN, seed=9)
    screen_eligible(rct_service, "01-001")
    arm = rct_service.enrol(INVESTIGATOR, "01-001", "2025-01-15")
    before = audit_count(engine)
    rows = rz.export_list(engine, STATISTICIAN, rct_protocol)
    used = [r for r in rows if r["subject_code"]]
    assert len(used) == 1 and used[0]["arm_code"] == arm and used[0]["randomized_by"] == "inv1"
    assert used[0]["randomized_utc"].endswith("Z") or "+" in used[0]["randomized_utc"]
    assert len(rows) == sum(1 for _ in rows if True) and all(r["block_size"] in (2, 4) for r in rows)
    assert audit_count(engine) == before + 1  # the export is audited
    path = rz.write_export(rows, tmp_path / "list.csv")
    assert path.read_text().splitlines()[0].startswith("protocol_version,stratum,slot,block")
    with pytest.raises(FileExistsError):
        rz.write_export(rows, path)


# ------------------------------------------------------------------ concurrency
def _concurrent_enrolments(engine, protocol, n: int) -> list[tuple[str, int]]:
    service = CaptureService(engine, protocol, today=lambda: TODAY)
    rz.generate_list(engine, protocol, STATISTICIAN, seed=11)
    codes = [f"01-{i:03d}" for i in range(1, n + 1)]
    for code in codes:
        screen_eligible(service, code)
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def enrol(code: str) -> None:
        try:
            barrier.wait()
            service.enrol(INVESTIGATOR, code, "2025-01-15")
        except Exception as exc:  # noqa: BLE001 - every failure is reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=enrol, args=(c,)) for c in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(engine) as s:
        return [tuple(r) for r in s.execute(select(Subject.subject_code, RandomizationSlot.slot)
                                            .join(RandomizationSlot, RandomizationSlot.subject_id == Subject.id))]


def test_simultaneous_enrolments_never_share_a_slot_sqlite(engine, rct_protocol):
    taken = _concurrent_enrolments(engine, rct_protocol, 8)
    assert sorted(slot for _, slot in taken) == list(range(1, 9))
    assert verify_chain(engine).ok


PG_URL = os.environ.get("REGENHEART_TEST_PG_URL")


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL (set REGENHEART_TEST_PG_URL)")
def test_simultaneous_enrolments_never_share_a_slot_postgres(rct_protocol):
    name = f"rh_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_study_database(PG_URL.rsplit("/", 1)[0] + f"/{name}", {"study": "x"})
    try:
        taken = _concurrent_enrolments(engine, rct_protocol, 8)
        assert sorted(slot for _, slot in taken) == list(range(1, 9))
        assert verify_chain(engine).ok
        for statement in ("UPDATE randomization_slots SET arm_code = CASE arm_code WHEN 'CTRL' THEN 'MSC' ELSE 'CTRL' END",
                          "DELETE FROM randomization_slots"):
            with pytest.raises(DBAPIError, match="never changed"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


# ------------------------------------------------------------------ concealment
def test_snapshot_carries_no_allocation_list(engine, rct_service, rct_protocol):
    rz.generate_list(engine, rct_protocol, STATISTICIAN, seed=9)
    screen_eligible(rct_service, "01-001")
    rct_service.enrol(INVESTIGATOR, "01-001", "2025-01-15")
    snap = take_snapshot(engine)
    # The subject's own stratum (from its site and screening data: ADSL.STRATAR) is no secret of the list;
    # slots, blocks, block sizes and every other stratum are.
    assert snap.subjects.set_index("subject_code").loc["01-001", "stratum"] == "site=01; lvef_stratum=LVEF>25"
    frames = [snap.subjects, snap.visits, snap.items, snap.derived, snap.forms, snap.adverse_events]
    for frame in frames:
        assert not {"slot", "block", "block_size"} & set(frame.columns)
        text_dump = frame.to_csv()
        assert "LVEF<=25" not in text_dump and "site=02" not in text_dump
    assert not any("random" in k for k in snap.meta)


def test_web_api_never_exposes_the_list_and_refuses_a_typed_arm(tmp_path, rct_protocol):
    from fastapi.testclient import TestClient

    from regenheart.capture.accounts import AccountService
    from regenheart.web import create_app

    from ..web.conftest import ACCOUNTS, FAST_HASHER, PASSWORD, SETUP, no_scorer, two_site_protocol

    protocol = two_site_protocol().model_copy(update={"active_protocol_version": "1.0"})
    path = tmp_path / "study.db"
    engine = create_study_database(path, {"study": protocol.study.nct_id})
    accounts = AccountService(engine, protocol, hasher=FAST_HASHER)
    for name, (role, site, full) in ACCOUNTS.items():
        accounts.create_user(SETUP, name, role, PASSWORD, site=site, full_name=full)
    service = CaptureService(engine, protocol, scorer=no_scorer, today=lambda: TODAY)
    made = rz.generate_list(engine, protocol, STATISTICIAN, seed=21)
    assert len(made.strata) == 4  # two sites x two LVEF strata
    screen_eligible(service, "01-001", lvef=30.0)
    screen_eligible(service, "01-002", lvef=31.0)
    service.enrol(INVESTIGATOR, "01-001", "2025-01-15")
    engine.dispose()
    app = create_app(path, protocol, scorer=no_scorer, today=lambda: TODAY, hasher=FAST_HASHER)
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        assert not [p for p in spec["paths"] if "random" in p.lower() or "allocation" in p.lower()]
        gets = [p for p, ops in spec["paths"].items() if "get" in ops and p.startswith("/api")]
        params = {"subject_id": "01-001", "visit": "SCR", "form": "echo", "seq": "1"}
        for username in ACCOUNTS:
            response = client.post("/api/auth/token", json={"username": username, "password": PASSWORD})
            headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
            ok = 0
            for p in gets:
                got = client.get(p.format(**params), headers=headers)
                ok += got.status_code == 200
                body = got.text
                # strata nobody was randomized in, and the list's own columns, appear nowhere
                for secret in ("LVEF<=25", "site=02", "block_size", "slots_per_stratum", made.sha256):
                    assert secret not in body, (username, p, secret)
            assert ok >= 5, (username, ok)  # the crawl really read data, not only refusals
        coord = {"Authorization": "Bearer " + client.post("/api/auth/token", json={
            "username": "inv1", "password": PASSWORD}).json()["access_token"]}
        refused = client.post("/api/subjects/01-002/enrolment", headers=coord,
                              json={"enrolled_date": "2025-01-16", "arm_code": "MSC"})
        assert refused.status_code == 422 and "cannot be entered" in refused.text
        taken = client.post("/api/subjects/01-002/enrolment", headers=coord, json={"enrolled_date": "2025-01-16"})
        assert taken.status_code == 200 and taken.json()["arm"] in ("MSC", "CTRL")


# ------------------------------------------------------------------ command line
def test_cli_generate_twice_and_export(tmp_path, rct_protocol):
    from typer.testing import CliRunner

    from regenheart.cli.main import app

    db = tmp_path / "study.db"
    create_study_database(db, {"study": "x", "protocol_version": "1.0"}).dispose()
    runner = CliRunner()
    first = runner.invoke(app, ["randomization", "generate", "--db", str(db), "--seed", "17"])
    assert first.exit_code == 0, first.output
    assert "2 strata" in first.output and "concealed" in first.output
    second = runner.invoke(app, ["randomization", "generate", "--db", str(db), "--seed", "18"])
    assert second.exit_code == 2 and "already has an allocation list" in second.output
    assert "Traceback" not in second.output
    out = tmp_path / "list.csv"
    exported = runner.invoke(app, ["randomization", "export", "--db", str(db), "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    rows = out.read_text().splitlines()
    expected = rz.plan_allocation(rct_protocol.protocol_version("1.0").randomization,
                                  rz.all_strata(rct_protocol, rct_protocol.protocol_version("1.0").randomization), 17)
    assert len(rows) == len(expected) + 1  # the list of seed 17 survived the refused second generation
    again = runner.invoke(app, ["randomization", "export", "--db", str(db), "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    single = tmp_path / "single.db"
    create_study_database(single, {"study": "x", "protocol_version": "2.0"}).dispose()
    refused = runner.invoke(app, ["randomization", "generate", "--db", str(single)])
    assert refused.exit_code == 2 and "no randomization scheme" in refused.output


# ------------------------------------------------------------------ the two-arm synthetic trial
def test_two_arm_synthetic_cohort_through_capture_and_the_sap(engine, rct_protocol):
    from regenheart.derive.adam import derive_all
    from regenheart.stats.analysis import run_sap
    from regenheart.synth import enter_cohort, generate_cohort
    from regenheart.synth.entry import SYNTH_STATISTICIAN

    rz.generate_list(engine, rct_protocol, SYNTH_STATISTICIAN, seed=2)
    cohort = generate_cohort(rct_protocol, seed=4, n_enrolled=12, n_screen_failures=2)
    enrolled = [s for s in cohort.subjects if s.enrol]
    for plan in enrolled:  # one plan per arm; the screening part is the same in both
        assert set(plan.by_arm) == {"MSC", "CTRL"}
        msc, ctrl = plan.by_arm["MSC"], plan.by_arm["CTRL"]
        assert [f for f in msc.forms if f.visit == "SCR"] == [f for f in ctrl.forms if f.visit == "SCR"] == plan.forms
        assert not any(f.form == "catheterization" for f in ctrl.forms)  # standard therapy only
        assert ctrl.visit_dates["D0"] == ctrl.enrolled_date  # day 0 = randomization date
        assert any(f.form == "catheterization" for f in msc.forms)
    enter_cohort(CaptureService(engine, rct_protocol, today=lambda: TODAY), cohort)
    snap = take_snapshot(engine)
    subjects = snap.subjects.set_index("subject_code")
    arms = subjects.loc[[s.code for s in enrolled], "arm_code"]
    assert set(arms) == {"MSC", "CTRL"}
    ctrl_codes = list(arms[arms == "CTRL"].index)
    assert (subjects.loc[ctrl_codes, "infusion_date"] == subjects.loc[ctrl_codes, "enrolled_date"]).all()
    cath = snap.items[snap.items["form_code"] == "catheterization"]["subject_code"].unique()
    assert set(cath) == set(arms[arms == "MSC"].index)
    # every allocation came from the concealed list, in slot order within its stratum
    rows = rz.export_list(engine, STATISTICIAN, rct_protocol)
    used = {r["subject_code"]: r["arm_code"] for r in rows if r["subject_code"]}
    assert used == arms.to_dict()
    results = run_sap(rct_protocol, derive_all(rct_protocol, snap))
    lvef = results["mmrm"]["results"]["LVEF"]
    assert lvef.get("differences"), lvef  # the between-arm model ran on the two-arm data
    assert verify_chain(engine).ok


def test_single_arm_plan_has_no_arm_plans(protocol):
    from regenheart.synth import generate_cohort

    assert all(s.by_arm is None for s in generate_cohort(protocol, seed=1).subjects)


def test_casebook_page_offers_no_arm_under_a_randomized_version(tmp_path, rct_protocol):
    from fastapi.testclient import TestClient

    from regenheart.capture.accounts import AccountService
    from regenheart.web import create_app

    from ..web.conftest import FAST_HASHER, PASSWORD, SETUP, no_scorer

    path = tmp_path / "study.db"
    engine = create_study_database(path, {"study": "x"})
    AccountService(engine, rct_protocol, hasher=FAST_HASHER).create_user(SETUP, "inv1", "investigator", PASSWORD,
                                                                          site="01", full_name="Ivan")
    service = CaptureService(engine, rct_protocol, scorer=no_scorer, today=lambda: TODAY)
    rz.generate_list(engine, rct_protocol, STATISTICIAN, seed=1)
    screen_eligible(service, "01-001")
    engine.dispose()
    app = create_app(path, rct_protocol, scorer=no_scorer, today=lambda: TODAY, hasher=FAST_HASHER)
    with TestClient(app) as client:
        login = client.get("/login")
        token = login.text.split('name="csrf_token" value="')[1].split('"')[0]
        client.post("/login", data={"username": "inv1", "password": PASSWORD, "csrf_token": token})
        page = client.get("/subjects/01-001")
        assert page.status_code == 200 and 'id="enrol-form"' in page.text
        assert 'name="arm_code"' not in page.text


def test_demo_refuses_an_unknown_protocol_version(tmp_path):
    from typer.testing import CliRunner

    from regenheart.cli.main import app

    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--protocol-version", "3.0"])
    assert result.exit_code == 2 and "no version '3.0'" in result.output and "1.0, 2.0" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "d").exists()
