"""Adverse events as full records: source-data verification, lock and signature flags on each adverse event,
queries on an adverse event's field (``queries.ae_id``), and adverse-event signatures (append-only, like the
form signatures of 0002).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FLAGS = ("verified", "locked", "signed")


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild: SQLite would drop and re-create tables that others reference).
    for flag in FLAGS:
        op.add_column("adverse_events", sa.Column(flag, sa.Boolean(), nullable=False, server_default=sa.false()))
    if op.get_bind().dialect.name == "sqlite":  # SQLite adds a column's foreign key only inline
        op.execute("ALTER TABLE queries ADD COLUMN ae_id INTEGER REFERENCES adverse_events (id)")
    else:
        op.add_column("queries", sa.Column("ae_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_queries_ae_id", "queries", "adverse_events", ["ae_id"], ["id"])
    op.create_index("ix_queries_ae_id", "queries", ["ae_id"])
    op.create_table(
        "ae_signatures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ae_id", sa.Integer(), sa.ForeignKey("adverse_events.id"), nullable=False, index=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("meaning", sa.String(200), nullable=False),
        sa.Column("ts_utc", sa.String(32), nullable=False),
        sa.Column("record_version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER ae_signatures_no_{event.lower()} BEFORE {event} ON ae_signatures "
                       "BEGIN SELECT RAISE(ABORT, 'ae_signatures is append-only'); END")
    elif dialect == "postgresql":  # edc_append_only() comes from migration 0002
        op.execute("CREATE TRIGGER ae_signatures_append_only BEFORE UPDATE OR DELETE ON ae_signatures "
                   "FOR EACH ROW EXECUTE FUNCTION edc_append_only()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ae_signatures_append_only ON ae_signatures")
    else:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS ae_signatures_no_{event}")
    op.drop_table("ae_signatures")
    with op.batch_alter_table("queries") as batch:
        batch.drop_index("ix_queries_ae_id")
        batch.drop_column("ae_id")
    with op.batch_alter_table("adverse_events") as batch:
        for flag in FLAGS:
            batch.drop_column(flag)
