"""the visits due today and the passing visit states: an index by state and window end

The due list reads the open states' visits whose window ends today or later (pharmacy.due_query),
and the preparation lists the visits in a passing state (dispensed, in preparation): without it,
both read every visit the years have left.

Revision ID: 0030_site
Revises: 0029_supply
Create Date: 2026-12-07 05:55:00
"""
from alembic import op

revision = '0030_site'
down_revision = '0029_supply'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_visit_state_window_end', 'visit', ['state', 'window_end'])


def downgrade() -> None:
    op.drop_index('ix_visit_state_window_end', table_name='visit')
