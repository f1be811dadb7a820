"""running counts of kits by storage location and state, filled from the kit rows

The storage page counted every kit put away in each tank by state, along the (storage location,
state) index of 0029: a scan of the stored kits that grows with the years (1.4-1.8x from a tenth
to ten years on SQLite, 2.6-2.8x on PostgreSQL). The kit moves keep these counts from now on
(storage_counts.py); the page reads a few rows a location.

Revision ID: 0032_storage
Revises: 0031_release
Create Date: 2026-12-07 09:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0032_storage'
down_revision = '0031_release'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('storage_count',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('storage_location_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kits', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['storage_location_id'], ['storage_location.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_storage_count_key', 'storage_count', ['storage_location_id', 'state'], unique=True)
    # An existing database's stored kits are counted once here (storage_counts.refill does the same).
    op.execute("INSERT INTO storage_count (storage_location_id, state, kits) "
               "SELECT storage_location_id, state, COUNT(*) FROM kit WHERE storage_location_id IS NOT NULL "
               "GROUP BY storage_location_id, state")


def downgrade() -> None:
    op.drop_index('ix_storage_count_key', table_name='storage_count')
    op.drop_table('storage_count')
