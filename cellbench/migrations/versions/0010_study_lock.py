"""study lock: a study's signed database lock and study unblinding (study_data.py)

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-24 09:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('study_lock',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('locked_by', sa.Integer(), nullable=False),
    sa.Column('locked_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('participants', sa.Integer(), nullable=False),
    sa.Column('randomised', sa.Integer(), nullable=False),
    sa.Column('lock_signature_id', sa.Integer(), nullable=True),
    sa.Column('unblinded_by', sa.Integer(), nullable=True),
    sa.Column('unblinded_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.Column('unblinding_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('unblinding_signature_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['lock_signature_id'], ['signature.id'], ),
    sa.ForeignKeyConstraint(['locked_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.ForeignKeyConstraint(['unblinded_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['unblinding_signature_id'], ['signature.id'], ),
    sa.PrimaryKeyConstraint('study_id')
    )


def downgrade() -> None:
    op.drop_table('study_lock')
