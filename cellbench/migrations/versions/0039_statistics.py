"""kit's index of unpacked kits gets its SQLite statistics

0033_monitor added ix_kit_unpacked (blinded lot, study, state) and analysed its new tables on
PostgreSQL only. On SQLite a database analysed before it kept kit's statistics without a row for
the new index, and SQLite's planner takes such an index for a very selective one (0036_studies'
lesson). PostgreSQL keeps statistics per column, which the index's columns already have.

Revision ID: 0039_statistics
Revises: 0038_evidence
Create Date: 2026-12-07 15:30:00
"""
from alembic import op

revision = '0039_statistics'
down_revision = '0038_evidence'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ANALYZE kit")


def downgrade() -> None:
    pass  # statistics are not schema: nothing to undo
