"""an unblinding's block counted from its own lines, and a study's unblinded participants apart

sealed.block_mates (the unblinding impact's block channel) counted the block by reading every line
of the randomisation list (only list_id was indexed), each joined to its participant: the whole
list for a block of 2 to 8 lines, so the impact page grew with the number of participants.
(list_id, block, participant_number, arm) hands over the block's lines in number order, covering
its counts; (study_id, unblinded_at, randomisation_number) hands over a study's unblinded
participants (a few), which are the lines the block knows, without reading the rest.

Revision ID: 0036_studies
Revises: 0035_scan
Create Date: 2026-12-07 12:25:00
"""
from alembic import op

revision = '0036_studies'
down_revision = '0035_scan'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_sealed_allocation_block', 'sealed_allocation', ['list_id', 'block', 'participant_number', 'arm'])
    op.create_index('ix_participant_unblinded', 'participant', ['study_id', 'unblinded_at', 'randomisation_number'])
    # Both engines see the new indexes' tables as they are. On SQLite an index with no statistics
    # beside tables that have some is taken for a very selective one: the pharmacy's lists of
    # visits by state then walked every participant of the study through ix_participant_unblinded
    # (38 ms at ten years, against 0.1 ms along the visit state index once analysed).
    op.execute("ANALYZE sealed_allocation")
    op.execute("ANALYZE participant")


def downgrade() -> None:
    op.drop_index('ix_participant_unblinded', table_name='participant')
    op.drop_index('ix_sealed_allocation_block', table_name='sealed_allocation')
