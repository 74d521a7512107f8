"""Alembic environment: runs migrations on the connection handed over by regenheart.store.db."""

from alembic import context

from regenheart.store.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the CLI always passes a connection
    raise RuntimeError("run migrations through regenheart.store.db.upgrade_database()")

context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
