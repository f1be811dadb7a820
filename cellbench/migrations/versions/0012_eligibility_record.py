"""eligibility record: consent date and each eligibility criterion confirmed at randomisation

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 09:00:00
"""
from alembic import op
import sqlalchemy as sa

import sqlmodel

import cellbench.models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'eligibility_record',
        sa.Column('participant_id', sa.Integer(), nullable=False),
        sa.Column('consent_date', sa.Date(), nullable=False),
        sa.Column('criteria', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('study_file_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('confirmed_by', sa.Integer(), nullable=False),
        sa.Column('confirmed_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
        sa.ForeignKeyConstraint(['confirmed_by'], ['app_user.id']),
        sa.ForeignKeyConstraint(['participant_id'], ['participant.id']),
        sa.PrimaryKeyConstraint('participant_id'),
    )


def downgrade() -> None:
    op.drop_table('eligibility_record')
