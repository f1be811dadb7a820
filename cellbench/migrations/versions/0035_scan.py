"""the scan station's and the returns page's own latest custody events along one index

custody.recent reads a person's newest events of one action (8 scans, the returns she took).
With only (kit_id, id) indexed, both engines walk the custody events backwards by id until
eight match: at ten years (302,802 events) the whole table for someone who has scanned little,
and /scan grew 5-6x from a tenth of the data to all of it. (by_user, action, id) hands the
eight over in order.

Revision ID: 0035_scan
Revises: 0034_notify
Create Date: 2026-12-07 10:05:00
"""
from alembic import op

revision = '0035_scan'
down_revision = '0034_notify'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_custody_by_user', 'custody_event', ['by_user', 'action', 'id'])


def downgrade() -> None:
    op.drop_index('ix_custody_by_user', table_name='custody_event')
