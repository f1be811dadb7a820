"""qc review sets: a second person reviews a set of QC results under one signature; its members,
each result in at most one set

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-06 12:38:12
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('qc_review_set',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('signature_id', sa.Integer(), nullable=True),
    sa.Column('created_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.ForeignKeyConstraint(['signature_id'], ['signature.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('qc_review_set', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qc_review_set_lot_id'), ['lot_id'], unique=False)
    op.create_table('qc_review_set_member',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('set_id', sa.Integer(), nullable=False),
    sa.Column('result_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['result_id'], ['qc_result.id'], ),
    sa.ForeignKeyConstraint(['set_id'], ['qc_review_set.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('result_id')
    )
    with op.batch_alter_table('qc_review_set_member', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qc_review_set_member_set_id'), ['set_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('qc_review_set_member', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qc_review_set_member_set_id'))
    op.drop_table('qc_review_set_member')
    with op.batch_alter_table('qc_review_set', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qc_review_set_lot_id'))
    op.drop_table('qc_review_set')
