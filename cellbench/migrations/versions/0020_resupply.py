"""resupply: per site and arm stock settings, the shipments the resupply trigger proposes, and the
notes of site stock changes it evaluates

Revision ID: 0020
Revises: 0016
Create Date: 2026-12-06 16:10:00
"""
from alembic import op
import sqlalchemy as sa
import cellbench.models


revision = '0020'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('resupply_setting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('arm', sa.String(length=16), nullable=False),
    sa.Column('min_stock', sa.Integer(), nullable=False),
    sa.Column('max_stock', sa.Integer(), nullable=False),
    sa.Column('do_not_ship_days', sa.Integer(), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('row_version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.ForeignKeyConstraint(['updated_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'site_id', 'arm')
    )
    with op.batch_alter_table('resupply_setting', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resupply_setting_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_resupply_setting_study_id'), ['study_id'], unique=False)
    op.create_table('resupply_proposal',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('open_slot', sa.Integer(), nullable=True),
    sa.Column('cause', sa.String(length=200), nullable=False),
    sa.Column('figures', sa.String(), nullable=False),
    sa.Column('created_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('evaluated_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('decided_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.Column('reason', sa.String(), nullable=True),
    sa.Column('shipment_id', sa.Integer(), nullable=True),
    sa.Column('row_version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['decided_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipment.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number'),
    sa.UniqueConstraint('study_id', 'site_id', 'open_slot')
    )
    with op.batch_alter_table('resupply_proposal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resupply_proposal_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_resupply_proposal_study_id'), ['study_id'], unique=False)
    op.create_table('resupply_proposal_kit',
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('kit_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['kit_id'], ['kit.id'], ),
    sa.ForeignKeyConstraint(['proposal_id'], ['resupply_proposal.id'], ),
    sa.PrimaryKeyConstraint('proposal_id', 'kit_id')
    )
    with op.batch_alter_table('resupply_proposal_kit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resupply_proposal_kit_kit_id'), ['kit_id'], unique=False)


    op.create_table('stock_note',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('cause', sa.String(length=64), nullable=False),
    sa.Column('noted_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('stock_note')
    with op.batch_alter_table('resupply_proposal_kit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resupply_proposal_kit_kit_id'))
    op.drop_table('resupply_proposal_kit')
    with op.batch_alter_table('resupply_proposal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resupply_proposal_study_id'))
        batch_op.drop_index(batch_op.f('ix_resupply_proposal_site_id'))
    op.drop_table('resupply_proposal')
    with op.batch_alter_table('resupply_setting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resupply_setting_study_id'))
        batch_op.drop_index(batch_op.f('ix_resupply_setting_site_id'))
    op.drop_table('resupply_setting')
