"""Electronic data capture workflow: user accounts, access log, data queries with their message
threads, and electronic signatures. The access log, query messages and signatures are append-only
at the database level.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = ("access_log", "query_messages", "signatures")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("site_code", sa.String(16)),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("locked_until", sa.String(32)),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("created_utc", sa.String(32), nullable=False),
        sa.Column("password_changed_utc", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts_utc", sa.String(32), nullable=False, index=True),
        sa.Column("username", sa.String(64), nullable=False, index=True),
        sa.Column("role", sa.String(32)),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("client", sa.String(64)),
        sa.Column("detail", sa.Text()),
    )
    op.create_table(
        "queries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject_id", sa.Integer(), sa.ForeignKey("subjects.id"), nullable=False, index=True),
        sa.Column("query_seq", sa.Integer(), nullable=False),
        sa.Column("visit_code", sa.String(16), nullable=False),
        sa.Column("form_code", sa.String(48), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("opened_utc", sa.String(32), nullable=False),
        sa.Column("closed_by", sa.String(64)),
        sa.Column("closed_utc", sa.String(32)),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("subject_id", "query_seq"),
    )
    op.create_table(
        "query_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("query_id", sa.Integer(), sa.ForeignKey("queries.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("ts_utc", sa.String(32), nullable=False),
        sa.Column("text", sa.Text()),
    )
    op.create_table(
        "signatures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("record_id", sa.Integer(), sa.ForeignKey("form_records.id"), nullable=False, index=True),
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
        for table in APPEND_ONLY:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION edc_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION edc_append_only()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS edc_append_only()")
    for table in ("signatures", "query_messages", "queries", "access_log", "users"):
        op.drop_table(table)
