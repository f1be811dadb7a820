"""sealed kit draws and kit shortages: the random kit assignment's record, and the supply manager's
"no kit" alert with its arm

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 09:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sealed_kit_draw',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('randomisation_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('candidates', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('index_drawn', sa.Integer(), nullable=False),
    sa.Column('kit_id', sa.Integer(), nullable=False),
    sa.Column('drawn_by', sa.Integer(), nullable=True),
    sa.Column('drawn_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['drawn_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['kit_id'], ['kit.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sealed_kit_draw', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sealed_kit_draw_kit_id'), ['kit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sealed_kit_draw_study_id'), ['study_id'], unique=False)

    op.create_table('sealed_kit_shortage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('randomisation_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('arm', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('in_date_on', sa.Date(), nullable=False),
    sa.Column('reported_by', sa.Integer(), nullable=True),
    sa.Column('reported_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('acknowledged_by', sa.Integer(), nullable=True),
    sa.Column('acknowledged_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.Column('acknowledgement', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['acknowledged_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['reported_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sealed_kit_shortage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sealed_kit_shortage_study_id'), ['study_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sealed_kit_shortage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sealed_kit_shortage_study_id'))
    op.drop_table('sealed_kit_shortage')
    with op.batch_alter_table('sealed_kit_draw', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sealed_kit_draw_study_id'))
        batch_op.drop_index(batch_op.f('ix_sealed_kit_draw_kit_id'))
    op.drop_table('sealed_kit_draw')
