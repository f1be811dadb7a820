"""keyset pagination: indexes that serve each paged list's order with its filters

Revision ID: 0027
Revises: 0026_counts
Create Date: 2026-12-06 23:00:00
"""
from alembic import op

revision = '0027'
down_revision = '0026_counts'
branch_labels = None
depends_on = None

# (index, table, columns): a list filtered by the leading column reads its page in key order
INDEXES = [
    ('ix_kit_state_number', 'kit', ['state', 'number']),
    ('ix_kit_blinded_lot_number', 'kit', ['blinded_lot_id', 'number']),
    ('ix_kit_site_number', 'kit', ['site_id', 'number']),
    ('ix_audit_type_seq', 'audit_event', ['entity_type', 'seq']),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
