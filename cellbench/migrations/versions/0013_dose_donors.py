"""dose donors: whose cells each administered dose was (sealed), for the same-donor rule of repeat
doses, and a shortage's requirement (the donor a later treatment's kit had to come from)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 09:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sealed_dose_donor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('randomisation_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('treatment', sa.Integer(), nullable=False),
    sa.Column('dose', sa.Integer(), nullable=False),
    sa.Column('kit_id', sa.Integer(), nullable=False),
    sa.Column('donor_id', sa.Integer(), nullable=True),
    sa.Column('recorded_by', sa.Integer(), nullable=True),
    sa.Column('recorded_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['donor_id'], ['donor.id'], ),
    sa.ForeignKeyConstraint(['kit_id'], ['kit.id'], ),
    sa.ForeignKeyConstraint(['recorded_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sealed_dose_donor', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sealed_dose_donor_study_id'), ['study_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sealed_dose_donor_randomisation_number'), ['randomisation_number'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_sealed_dose_donor_kit_id'), ['kit_id'], unique=False)
    with op.batch_alter_table('sealed_kit_shortage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requirement', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sealed_kit_shortage', schema=None) as batch_op:
        batch_op.drop_column('requirement')
    with op.batch_alter_table('sealed_dose_donor', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sealed_dose_donor_kit_id'))
        batch_op.drop_index(batch_op.f('ix_sealed_dose_donor_randomisation_number'))
        batch_op.drop_index(batch_op.f('ix_sealed_dose_donor_study_id'))
    op.drop_table('sealed_dose_donor')
