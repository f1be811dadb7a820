"""running counts of kits by study, place, blinded lot and state, filled from the kit rows

Revision ID: 0026_counts
Revises: 0025
Create Date: 2026-12-06 22:45:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0026_counts'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kit_count',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('place', sa.Integer(), nullable=False),
    sa.Column('blinded_lot_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kits', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['blinded_lot_id'], ['blinded_lot.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_kit_count_key', 'kit_count', ['study_id', 'place', 'blinded_lot_id', 'state'], unique=True)
    op.create_index('ix_kit_count_blinded_lot_id', 'kit_count', ['blinded_lot_id'], unique=False)
    # An existing database's kits are counted once here; from now on every move keeps the counts
    # (kit_counts.py). Place 0 is the cell bench, as kit_counts.BENCH.
    op.execute("INSERT INTO kit_count (study_id, place, blinded_lot_id, state, kits) "
               "SELECT study_id, COALESCE(site_id, 0), blinded_lot_id, state, COUNT(*) FROM kit "
               "WHERE blinded_lot_id IS NOT NULL GROUP BY study_id, COALESCE(site_id, 0), blinded_lot_id, state")


def downgrade() -> None:
    op.drop_index('ix_kit_count_blinded_lot_id', table_name='kit_count')
    op.drop_index('ix_kit_count_key', table_name='kit_count')
    op.drop_table('kit_count')
