"""bedside check: the participant's card and each syringe label scanned, matched, before a dose
is recorded as administered

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-06 16:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bedside_check',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('kit_id', sa.Integer(), nullable=True),
    sa.Column('dose', sa.Integer(), nullable=True),
    sa.Column('by_user', sa.Integer(), nullable=False),
    sa.Column('at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['by_user'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['kit_id'], ['kit.id'], ),
    sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('bedside_check', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bedside_check_visit_id'), ['visit_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bedside_check', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bedside_check_visit_id'))
    op.drop_table('bedside_check')
