"""Concealed randomization: allocation lists (header) and their slots, one row per stratum and slot.

A slot is written once when a subject is randomized; database triggers refuse deleting slots or
lists, and any update of a slot except taking an unused one (SQLite and PostgreSQL).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "randomization_lists",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("protocol_version", sa.String(16), nullable=False, unique=True),
        sa.Column("seed", sa.String(40), nullable=False),
        sa.Column("scheme", sa.Text(), nullable=False),
        sa.Column("list_sha256", sa.String(64), nullable=False),
        sa.Column("generated_by", sa.String(64), nullable=False),
        sa.Column("generated_utc", sa.String(32), nullable=False),
    )
    op.create_table(
        "randomization_slots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("list_id", sa.Integer(), sa.ForeignKey("randomization_lists.id"), nullable=False, index=True),
        sa.Column("stratum", sa.String(200), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("arm_code", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.Integer(), sa.ForeignKey("subjects.id"), unique=True),
        sa.Column("used_utc", sa.String(32)),
        sa.Column("used_by", sa.String(64)),
        sa.UniqueConstraint("list_id", "stratum", "slot"),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in ("randomization_lists", "randomization_slots"):
            op.execute(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table}: allocations cannot be deleted'); END")
        op.execute("CREATE TRIGGER randomization_lists_no_update BEFORE UPDATE ON randomization_lists "
                   "BEGIN SELECT RAISE(ABORT, 'randomization_lists: a generated list cannot be changed'); END")
        op.execute(
            "CREATE TRIGGER randomization_slots_write_once BEFORE UPDATE ON randomization_slots "
            "WHEN OLD.subject_id IS NOT NULL OR NEW.arm_code IS NOT OLD.arm_code OR NEW.stratum IS NOT OLD.stratum "
            "OR NEW.slot IS NOT OLD.slot OR NEW.block IS NOT OLD.block OR NEW.list_id IS NOT OLD.list_id "
            "BEGIN SELECT RAISE(ABORT, 'randomization_slots: a slot is taken once and never changed'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION randomization_write_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'randomization_slots' AND OLD.subject_id IS NULL "
            "AND NEW.arm_code = OLD.arm_code AND NEW.stratum = OLD.stratum AND NEW.slot = OLD.slot "
            "AND NEW.block = OLD.block AND NEW.list_id = OLD.list_id THEN RETURN NEW; END IF; "
            "RAISE EXCEPTION '%: allocations are written once and never changed or deleted', TG_TABLE_NAME; "
            "END $$"
        )
        for table in ("randomization_lists", "randomization_slots"):
            op.execute(f"CREATE TRIGGER {table}_write_once BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION randomization_write_once()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in ("randomization_lists", "randomization_slots"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_write_once ON {table}")
        op.execute("DROP FUNCTION IF EXISTS randomization_write_once()")
    else:
        for name in ("randomization_lists_no_delete", "randomization_slots_no_delete",
                     "randomization_lists_no_update", "randomization_slots_write_once"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("randomization_slots")
    op.drop_table("randomization_lists")
