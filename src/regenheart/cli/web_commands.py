"""CLI commands of the EDC web application: ``regenheart serve`` and ``regenheart users ...``.

Wire them into a Typer app with :func:`register`. Errors are reported as one clear line (or one
line per problem) on stderr with exit code 1, never as a traceback.
"""

from __future__ import annotations

import getpass
import inspect
import logging
import os
from pathlib import Path

import typer

PASSWORD_ENV = "REGENHEART_PASSWORD"
APP_DB_ENV = "REGENHEART_DB"              # read by web.app.app_from_environment in each worker
APP_PROTOCOL_ENV = "REGENHEART_PROTOCOL"
WORKER_HEALTHCHECK_SECONDS = 60  # how long a worker process may take to answer uvicorn's supervisor


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _cli_actor():
    from regenheart.capture.permissions import Actor

    try:
        who = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        who = "unknown"
    return Actor(f"cli:{who}"[:64], "admin")


def _open(db: str):
    from regenheart.store.db import DatabaseError, open_study_database

    try:
        return open_study_database(db)
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - unreadable file, bad URL, driver missing
        raise _fail(f"cannot open the study database {db}: {exc.__class__.__name__}: {exc}") from None


def _load_protocol(protocol: Path | None, engine=None):
    """--protocol FILE, else the protocol stored in the database by 'db init --protocol', else RegenHeart's."""
    from regenheart.protocol import ProtocolError
    from regenheart.store.study import study_protocol

    try:
        return study_protocol(engine, protocol)
    except (ProtocolError, OSError) as exc:
        raise _fail(str(exc)) from None


def serve(
    db: str = typer.Option(..., "--db", help="Study database: a SQLite file path or a postgresql+psycopg:// URL."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    protocol: Path | None = typer.Option(None, "--protocol", help="Study definition (default: the one stored by "
                                                                  "'db init --protocol', else RegenHeart)."),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="Serve HTTPS with this certificate."),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="Private key of the certificate."),
    proxy_headers: bool = typer.Option(False, "--proxy-headers",
                                       help="Trust X-Forwarded-Proto/For from a reverse proxy on this host "
                                            "(HTTPS terminated by the proxy: session cookies become Secure)."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (PostgreSQL: one or two per core; "
                                                     "SQLite has one writer at a time, so 1 is best)."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                    help="Log every HTTP request on stdout (off: it costs throughput; log-ins, "
                                         "refusals and invalid tokens are always in the database's access log)."),
) -> None:
    """Run the EDC web application (browser UI and REST API; OpenAPI at /openapi.json)."""
    import uvicorn

    from regenheart.capture.accounts import AccountService
    from regenheart.web import create_app

    if not 0 < port < 65536:
        raise _fail(f"--port must be between 1 and 65535, not {port}")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise _fail("--ssl-certfile and --ssl-keyfile must be given together")
    if not 1 <= workers <= 64:
        raise _fail(f"--workers must be between 1 and 64, not {workers}")
    engine = _open(db)
    proto = _load_protocol(protocol, engine)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if AccountService(engine, proto).count() == 0:
        typer.echo("warning: no user accounts yet; create one with "
                   f"'regenheart users add --db {db} --username NAME --role admin'", err=True)
    try:
        app = create_app(db, proto)
    except Exception as exc:  # noqa: BLE001 - report, never a traceback
        raise _fail(f"cannot start the application: {exc}") from None
    scheme = "https" if ssl_certfile else "http"
    typer.echo(f"RegenHeart EDC on {scheme}://{host}:{port}/  (API: {scheme}://{host}:{port}/openapi.json)"
               + (f", {workers} worker processes" if workers > 1 else ""))
    # uvicorn picks uvloop and httptools (dependencies of regenheart) when they are installed: its fastest.
    options = {"host": host, "port": port, "log_level": "info", "access_log": access_log,
               "proxy_headers": proxy_headers, "forwarded_allow_ips": "127.0.0.1" if proxy_headers else None,
               "ssl_certfile": str(ssl_certfile) if ssl_certfile else None,
               "ssl_keyfile": str(ssl_keyfile) if ssl_keyfile else None}
    if workers == 1:
        uvicorn.run(app, **options)
        return
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # A worker importing the stack on a busy machine, or holding the interpreter for a long request, may
        # answer the supervisor's ping late: uvicorn's default (5 s) would kill and restart it.
        options["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
    # Each worker process builds its own application from the environment: sessions, tokens, CSRF
    # and log-in lock-outs live in the database (signed with its secret), so any worker serves any request.
    engine.dispose()
    os.environ[APP_DB_ENV] = db
    if protocol:
        os.environ[APP_PROTOCOL_ENV] = str(protocol.resolve())
    uvicorn.run("regenheart.web.app:app_from_environment", factory=True, workers=workers, **options)


def _password(confirm: bool = True) -> str:
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return value
    return typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)


def users_add(
    db: str = typer.Option(..., "--db", help="Study database."),
    username: str = typer.Option(..., "--username", help="Unique user name (letters, digits, . _ @ -)."),
    role: str = typer.Option(..., "--role", help="admin, data_manager, investigator, coordinator, monitor, "
                                                 "statistician or read_only."),
    site: str | None = typer.Option(None, "--site", help="Restrict the account to one site's subjects."),
    full_name: str | None = typer.Option(None, "--full-name", help="Printed name shown on e-signatures."),
    protocol: Path | None = typer.Option(None, "--protocol", help="Study definition (default: the one stored by "
                                                                  "'db init --protocol', else RegenHeart)."),
) -> None:
    """Create a user account (password from $REGENHEART_PASSWORD or a hidden prompt)."""
    from regenheart.capture.accounts import AccountService
    from regenheart.capture.errors import ValidationFailed

    engine = _open(db)
    accounts = AccountService(engine, _load_protocol(protocol, engine))
    password = _password()
    try:
        user = accounts.create_user(_cli_actor(), username, role, password, site=site, full_name=full_name)
    except ValidationFailed as exc:
        for v in exc.violations:
            shown = "" if v.field == "password" or v.value is None else f" (given: {v.value})"
            typer.echo(f"error: {v.field}: {v.message}{shown}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"created {user.username} ({user.role}, {'site ' + user.site if user.site else 'all sites'})")


def users_list(db: str = typer.Option(..., "--db", help="Study database.")) -> None:
    """List the user accounts."""
    from regenheart.capture.accounts import AccountService

    accounts = AccountService(_open(db))
    for user in accounts.list_users(_cli_actor()):
        flags = ("" if user.active else " inactive") + (f" locked until {user.locked_until}" if user.locked_until else "")
        typer.echo(f"{user.username}\t{user.role}\t{user.site or 'all'}\t{user.full_name}{flags}")


def users_unlock(
    db: str = typer.Option(..., "--db", help="Study database."),
    username: str = typer.Option(..., "--username"),
    reason: str = typer.Option(..., "--reason", help="Why the lock-out is lifted (audited)."),
) -> None:
    """Lift a lock-out after repeated failed log-ins."""
    from regenheart.capture.accounts import AccountService
    from regenheart.capture.errors import NotFound, ValidationFailed

    accounts = AccountService(_open(db))
    try:
        accounts.unlock(_cli_actor(), username, reason=reason, channel="cli")
    except (NotFound, ValidationFailed) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"unlocked {username}")


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``users`` command group to ``app``."""
    app.command("serve")(serve)
    users = typer.Typer(help="User accounts of a study database (every change is audited).", no_args_is_help=True)
    users.command("add")(users_add)
    users.command("list")(users_list)
    users.command("unlock")(users_unlock)
    app.add_typer(users, name="users")
