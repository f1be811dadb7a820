"""the kits ever dispensed, found by action

The trial export counts the visits whose kit was dispensed, and finds each page's dispensing and
not-administered events. Custody events were indexed by kit and by person, not by action, so the
count read every custody event of ten years (300,000 rows, 60-75 ms on PostgreSQL, 40 ms on
SQLite) to find the one in twenty that is a dispensing. (action, kit_id) holds them in order.

Revision ID: 0042_custody_action
Revises: 0041_counts
Create Date: 2026-12-07 19:00:00
"""
from alembic import op

revision = '0042_custody_action'
down_revision = '0041_counts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_custody_action_kit', 'custody_event', ['action', 'kit_id'])
    op.execute("ANALYZE custody_event")  # both engines: a new index with no statistics misleads SQLite (0036)


def downgrade() -> None:
    op.drop_index('ix_custody_action_kit', table_name='custody_event')
