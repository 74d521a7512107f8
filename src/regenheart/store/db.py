"""Opening, creating and migrating a study database.

SQLite (a single file) is the embedded default; a ``postgresql+psycopg://`` URL selects PostgreSQL.
Every schema change goes through Alembic (``regenheart/store/migrations``), including the first.
"""

from __future__ import annotations

import weakref
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from regenheart.store.models import StudyMeta

READER_OPTION = "regenheart_reader"  # execution option of read-only connections (see reader())


class DatabaseError(RuntimeError):
    """The database cannot be used as a study database (missing, not migrated, wrong study)."""


def database_url(target: str | Path) -> str:
    """Turn a file path into a SQLite URL; pass URLs (``scheme://...``) through unchanged."""
    text = str(target)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).resolve()}"


def make_engine(target: str | Path, *, durable: bool = True) -> Engine:
    """Create an engine with the settings a study database needs on each backend.

    SQLite runs in WAL mode (readers never block the one writer; the web server needs that).
    ``durable`` (default) fsyncs the log on every commit (``synchronous=FULL``): a committed entry
    survives a power cut. Bulk loading of synthetic data may pass ``durable=False``
    (``synchronous=NORMAL``): still crash-safe for the file, but the last transactions may be lost
    on power loss; it is about twice as fast on slow disks. Closing the engine checkpoints the log
    back into the single database file.
    """
    url = database_url(target)
    if url.startswith("sqlite"):
        synchronous = "FULL" if durable else "NORMAL"
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            # Let SQLAlchemy's 'begin' event issue BEGIN IMMEDIATE: a writer takes the write lock
            # before reading the audit-chain head, so two writers can never fork the chain.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):
            # A reader (see :func:`reader`) takes no write lock: in WAL mode it never waits for the writer.
            deferred = connection.get_execution_options().get(READER_OPTION)
            connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def reader(engine: Engine) -> Engine:
    """The engine for read-only work. Never write through it.

    SQLite: its transactions begin deferred (no write lock, so a read never queues behind the writer).
    PostgreSQL: its connections run in autocommit (each statement sees the data committed when it starts,
    as in the default READ COMMITTED transaction), which saves the ROLLBACK round trip every read
    transaction ends with; the web server's per-request token check is one such read.
    """
    found = _READERS.get(engine)
    if found is None:  # one per engine: it shares the engine's connection pool
        options = {READER_OPTION: True} if engine.dialect.name == "sqlite" else {"isolation_level": "AUTOCOMMIT"}
        found = _READERS[engine] = engine.execution_options(**options)
    return found


_READERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _alembic_config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("regenheart.store") / "migrations"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this version of regenheart."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("regenheart.store") / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_database(engine: Engine) -> None:
    """Apply all pending migrations (creates the schema on an empty database)."""
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "head")


def create_study_database(target: str | Path, meta: dict[str, str], *, durable: bool = True) -> Engine:
    """Create a new, empty study database at ``target`` and record ``meta`` (study, protocol...).

    Refuses to overwrite an existing SQLite file.
    """
    url = database_url(target)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.exists():
            raise DatabaseError(f"database file {path} already exists; choose a new path")
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, durable=durable)
    upgrade_database(engine)
    with Session(engine) as session, session.begin():
        for key, value in meta.items():
            session.add(StudyMeta(key=key, value=value))
    return engine


def open_study_database(target: str | Path) -> Engine:
    """Open an existing study database, checking that its schema is at the current revision."""
    url = database_url(target)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise DatabaseError(f"no database at {url.removeprefix('sqlite:///')}")
    engine = make_engine(url)
    revision = current_revision(engine)
    if revision is None:
        raise DatabaseError(f"{target} is not a regenheart study database (no schema revision)")
    if revision != head_revision():
        raise DatabaseError(
            f"{target} has schema revision {revision}, this regenheart needs {head_revision()}; "
            "run 'regenheart db upgrade'"
        )
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_meta(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {m.key: m.value for m in session.scalars(select(StudyMeta))}
