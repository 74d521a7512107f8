"""Initial schema: study metadata, subjects, visits, form data, derived scores, adverse events,
and the append-only hash-chained audit trail.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "study_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "subjects",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject_code", sa.String(32), nullable=False, unique=True),
        sa.Column("site_code", sa.String(16), nullable=False, index=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("screening_date", sa.Date(), nullable=False),
        sa.Column("consent_date", sa.Date()),
        sa.Column("eligible", sa.Boolean()),
        sa.Column("eligibility_failed", sa.Text()),
        sa.Column("enrolled_date", sa.Date()),
        sa.Column("arm_code", sa.String(16)),
        sa.Column("infusion_date", sa.Date()),
        sa.Column("disposition", sa.String(24)),
        sa.Column("disposition_date", sa.Date()),
        sa.Column("disposition_reason", sa.Text()),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "visits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject_id", sa.Integer(), sa.ForeignKey("subjects.id"), nullable=False, index=True),
        sa.Column("visit_code", sa.String(16), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("study_day", sa.Integer()),
        sa.Column("in_window", sa.Boolean()),
        sa.UniqueConstraint("subject_id", "visit_code"),
    )
    op.create_table(
        "form_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject_id", sa.Integer(), sa.ForeignKey("subjects.id"), nullable=False, index=True),
        sa.Column("visit_code", sa.String(16), nullable=False),
        sa.Column("form_code", sa.String(48), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("signed", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("subject_id", "visit_code", "form_code"),
    )
    op.create_table(
        "item_values",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("record_id", sa.Integer(), sa.ForeignKey("form_records.id"), nullable=False, index=True),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("value", sa.Text()),
        sa.UniqueConstraint("record_id", "field"),
    )
    op.create_table(
        "derived_values",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("record_id", sa.Integer(), sa.ForeignKey("form_records.id"), nullable=False, index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("scoring_version", sa.String(64), nullable=False),
        sa.UniqueConstraint("record_id", "name"),
    )
    op.create_table(
        "adverse_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject_id", sa.Integer(), sa.ForeignKey("subjects.id"), nullable=False, index=True),
        sa.Column("ae_seq", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(200), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=False),
        sa.Column("stop_date", sa.Date()),
        sa.Column("study_day", sa.Integer()),
        sa.Column("ctcae_grade", sa.Integer(), nullable=False),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.Column("sae_criteria", sa.Text()),
        sa.Column("related_product", sa.String(16), nullable=False),
        sa.Column("related_procedure", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("subject_id", "ae_seq"),
    )
    op.create_table(
        "audit_trail",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts_utc", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("subject_code", sa.String(32), index=True),
        sa.Column("visit_code", sa.String(16)),
        sa.Column("form_code", sa.String(48)),
        sa.Column("record_key", sa.String(64)),
        sa.Column("field", sa.String(64)),
        sa.Column("old_value", sa.Text()),
        sa.Column("new_value", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.execute(sa.text(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')"))

    # The audit trail is append-only at the database level, not only in application code.
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_trail_no_{event.lower()} BEFORE {event} ON audit_trail "
                "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_trail_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit trail is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_trail_append_only BEFORE UPDATE OR DELETE ON audit_trail "
            "FOR EACH ROW EXECUTE FUNCTION audit_trail_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_trail_append_only ON audit_trail")
        op.execute("DROP FUNCTION IF EXISTS audit_trail_append_only()")
    for table in ("audit_head", "audit_trail", "adverse_events", "derived_values", "item_values",
                  "form_records", "visits", "subjects", "study_meta"):
        op.drop_table(table)
