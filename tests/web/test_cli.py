"""`regenheart serve` and `regenheart users ...` (registered on a local Typer app)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from regenheart.capture.accounts import AccountService
from regenheart.cli.web_commands import register
from regenheart.store.db import open_study_database

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_users_add_with_password_from_the_environment(db_path):
    result = runner.invoke(cli(), ["users", "add", "--db", str(db_path), "--username", "Nina", "--role",
                                   "coordinator", "--site", "01", "--full-name", "Nina Nurse"],
                           env={"REGENHEART_PASSWORD": "a long password"})
    assert result.exit_code == 0, result.output
    assert "created nina (coordinator, site 01)" in result.output
    accounts = AccountService(open_study_database(db_path))
    assert accounts.authenticate("nina", "a long password").full_name == "Nina Nurse"
    result = runner.invoke(cli(), ["users", "list", "--db", str(db_path)])
    assert "nina\tcoordinator\t01\tNina Nurse" in result.output


def test_users_add_with_a_hidden_prompt(db_path):
    result = runner.invoke(cli(), ["users", "add", "--db", str(db_path), "--username", "pat", "--role", "monitor"],
                           input="prompted password\nprompted password\n", env={"REGENHEART_PASSWORD": ""})
    assert result.exit_code == 0, result.output
    assert "prompted password" not in result.output  # hidden


def test_users_add_reports_every_problem_without_a_traceback(db_path):
    result = runner.invoke(cli(), ["users", "add", "--db", str(db_path), "--username", "coord1", "--role", "nurse",
                                   "--site", "99"], env={"REGENHEART_PASSWORD": "short"})
    assert result.exit_code == 1
    for text in ("role: must be one of", "site: must be one of", "password: must be at least 10",
                 "username: is already taken"):
        assert text in result.output
    assert "Traceback" not in result.output


def test_missing_database_is_a_clear_error(tmp_path):
    for args in (["users", "add", "--username", "a1", "--role", "admin"], ["serve"]):
        result = runner.invoke(cli(), [*args, "--db", str(tmp_path / "none.db")], env={"REGENHEART_PASSWORD": "x" * 12})
        assert result.exit_code == 1 and "error: no database at" in result.output
        assert "Traceback" not in result.output


def test_serve_checks_its_options(db_path):
    result = runner.invoke(cli(), ["serve", "--db", str(db_path), "--port", "0"])
    assert result.exit_code == 1 and "--port must be between" in result.output
    result = runner.invoke(cli(), ["serve", "--db", str(db_path), "--ssl-certfile", "cert.pem"])
    assert result.exit_code == 1 and "together" in result.output


def test_serve_runs_uvicorn_with_the_app(db_path, monkeypatch):
    calls = {}

    def fake_run(app, **kwargs):
        calls["app"], calls["kwargs"] = app, kwargs

    import uvicorn
    monkeypatch.setattr(uvicorn, "run", fake_run)
    result = runner.invoke(cli(), ["serve", "--db", str(db_path), "--host", "0.0.0.0", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert calls["kwargs"]["host"] == "0.0.0.0" and calls["kwargs"]["port"] == 8123
    assert calls["app"].title == "RegenHeart EDC"


def test_users_unlock(db_path):
    accounts = AccountService(open_study_database(db_path))
    for _ in range(5):
        try:
            accounts.authenticate("coord1", "bad")
        except Exception:  # noqa: BLE001, S110 - the failures are the point
            pass
    assert accounts.is_locked("coord1")
    result = runner.invoke(cli(), ["users", "unlock", "--db", str(db_path), "--username", "coord1",
                                   "--reason", "verified identity by phone"])
    assert result.exit_code == 0 and not accounts.is_locked("coord1")
