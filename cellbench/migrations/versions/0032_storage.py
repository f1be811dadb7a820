"""running counts of kits by storage location and state, and a sealed list's lines by arm, filled
from the rows

The storage page counted every kit put away in each tank by state, along the (storage location,
state) index of 0029: a scan of the stored kits that grows with the years (1.4-1.8x from a tenth
to ten years on SQLite, 2.6-2.8x on PostgreSQL). The kit moves keep these counts from now on
(storage_counts.py); the page reads a few rows a location.

Every page of a sealed list showed its arm counts by a GROUP BY over the whole list (16 ms CPU on
SQLite and 105 ms on PostgreSQL for the bench's 66,672-line kit list). A list's lines never change
once made, so its arm counts are kept beside it (sealed_list_arm, written by sealed.create_list).

The storage page's "not yet put away" (kits at a site, in stock, in no tank) is found along the
(storage location, state) index. PostgreSQL, taking location and state as independent, expected
thousands of such kits where there are none and walked a site's kits instead (22-108 ms at ten
years); statistics of the two columns together let it see that in-stock kits are in tanks (0.1 ms).

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
    op.create_table('sealed_list_arm',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('arm', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['sealed_list.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('list_id', 'arm')
    )
    for lines in ('sealed_allocation', 'sealed_kit_arm'):  # a list's lines are in one of them, by its kind
        op.execute(f"INSERT INTO sealed_list_arm (list_id, arm, lines) "
                   f"SELECT list_id, arm, COUNT(*) FROM {lines} GROUP BY list_id, arm")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE STATISTICS IF NOT EXISTS kit_location_state (mcv) ON storage_location_id, state FROM kit")
        op.execute("ANALYZE kit")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS kit_location_state")
    op.drop_table('sealed_list_arm')
    op.drop_index('ix_storage_count_key', table_name='storage_count')
    op.drop_table('storage_count')
