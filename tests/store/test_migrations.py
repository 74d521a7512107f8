"""The Alembic migrations build exactly the schema the models describe (no drift)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from regenheart.store.db import current_revision, head_revision, open_study_database
from regenheart.store.models import Base


def test_migrated_schema_matches_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert current_revision(engine) == head_revision()


def test_open_refuses_missing_and_foreign_files(tmp_path):
    import pytest

    from regenheart.store.db import DatabaseError
    with pytest.raises(DatabaseError, match="no database"):
        open_study_database(tmp_path / "missing.db")
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(DatabaseError, match="not a regenheart study database"):
        open_study_database(tmp_path / "empty.db")
