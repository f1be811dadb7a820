"""storage positions: boxes in the racks of a site's tanks, and the position each kit was put in

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 16:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('storage_box',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('storage_location_id', sa.Integer(), nullable=False),
    sa.Column('rack', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['storage_location_id'], ['storage_location.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    with op.batch_alter_table('storage_box', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storage_box_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_storage_box_storage_location_id'), ['storage_location_id'], unique=False)
    op.create_table('kit_position',
    sa.Column('kit_id', sa.Integer(), nullable=False),
    sa.Column('box_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('placed_by', sa.Integer(), nullable=True),
    sa.Column('placed_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['box_id'], ['storage_box.id'], ),
    sa.ForeignKeyConstraint(['kit_id'], ['kit.id'], ),
    sa.ForeignKeyConstraint(['placed_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('kit_id'),
    sa.UniqueConstraint('box_id', 'position', name='uq_kit_position_box_position')
    )
    with op.batch_alter_table('kit_position', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kit_position_box_id'), ['box_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('kit_position', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_kit_position_box_id'))
    op.drop_table('kit_position')
    with op.batch_alter_table('storage_box', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_storage_box_storage_location_id'))
        batch_op.drop_index(batch_op.f('ix_storage_box_site_id'))
    op.drop_table('storage_box')
