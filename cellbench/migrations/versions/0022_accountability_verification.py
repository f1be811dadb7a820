"""accountability verification: a monitor's signed source data verification of a site's
accountability figures, numbered per study and site

Revision ID: 0022
Revises: 0016
Create Date: 2026-12-06 16:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accountability_verification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('figures', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('figures_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('comment', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('by_user', sa.Integer(), nullable=False),
    sa.Column('at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('signature_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['by_user'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['signature_id'], ['signature.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'site_id', 'sequence')
    )
    with op.batch_alter_table('accountability_verification', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accountability_verification_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_accountability_verification_study_id'), ['study_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('accountability_verification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accountability_verification_study_id'))
        batch_op.drop_index(batch_op.f('ix_accountability_verification_site_id'))
    op.drop_table('accountability_verification')
