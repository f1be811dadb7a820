"""keyset pagination of the remaining lists: indexes that serve each list's order with its filters

Revision ID: 0028_paging
Revises: 0027
Create Date: 2026-12-07 02:30:00
"""
from alembic import op

revision = '0028_paging'
down_revision = '0027'
branch_labels = None
depends_on = None

# (index, table, columns): a list filtered by the leading column(s) reads its page in key order.
# Not here: users (username is unique, so indexed), donors and label runs / kit quarantines (by id,
# or by open-first then id over a few hundred rows), list entries (unique (list_id, position)).
INDEXES = [
    ('ix_donation_eligibility_donor', 'donation', ['eligibility', 'donor_id']),
    ('ix_material_lot_expiry', 'material_lot', ['expiry', 'material_code', 'supplier_lot']),
    ('ix_material_lot_status_expiry', 'material_lot', ['status', 'expiry', 'material_code', 'supplier_lot']),
    ('ix_equipment_due_asset', 'equipment', ['calibration_due', 'asset_id']),
    ('ix_notification_state_id', 'notification', ['state', 'id']),
    ('ix_unblinding_at_id', 'unblinding', ['at', 'id']),
    ('ix_lot_state_number', 'lot', ['state', 'number']),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
