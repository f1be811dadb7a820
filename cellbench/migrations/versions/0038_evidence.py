"""the checkpoints along their sequence: an evidence packet's pieces found per event

A lot's evidence packet proves its events by pieces of the chain, each from just after the signed
checkpoint before an event to the first one at or after it. It read every checkpoint kept to find
them; with hourly checkpoints that is some 87,600 rows at ten years. With (seq) indexed each
event's two are looked up, and the hourly task's latest is read from the index's end.

Revision ID: 0038_evidence
Revises: 0037_homes
Create Date: 2026-12-07 12:40:00
"""
from alembic import op

revision = '0038_evidence'
down_revision = '0037_homes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_checkpoint_seq', 'checkpoint', ['seq'])
    op.execute("ANALYZE checkpoint")  # both engines: a new index with no statistics misleads SQLite's planner (0036)


def downgrade() -> None:
    op.drop_index('ix_checkpoint_seq', table_name='checkpoint')
