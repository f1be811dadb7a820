"""the preparer's record: thaw end and masking measure per visit, the kit's units scanned (not their
codes), one syringe per gland with its volume and printed labels

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-06 15:57:55
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('preparation',
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('kit_id', sa.Integer(), nullable=False),
    sa.Column('thaw_ended_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.Column('thaw_ended_by', sa.Integer(), nullable=True),
    sa.Column('masking_measure', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('masking_by', sa.Integer(), nullable=True),
    sa.Column('masking_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.ForeignKeyConstraint(['kit_id'], ['kit.id'], ),
    sa.ForeignKeyConstraint(['masking_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['thaw_ended_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], ),
    sa.PrimaryKeyConstraint('visit_id')
    )
    with op.batch_alter_table('preparation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_preparation_kit_id'), ['kit_id'], unique=False)

    op.create_table('preparation_syringe',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('dose', sa.Integer(), nullable=False),
    sa.Column('volume_ml', sa.Float(), nullable=False),
    sa.Column('drawn_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('by_user', sa.Integer(), nullable=False),
    sa.Column('labels_printed', sa.Integer(), nullable=False),
    sa.Column('label_printed_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.ForeignKeyConstraint(['by_user'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('visit_id', 'dose')
    )
    with op.batch_alter_table('preparation_syringe', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_preparation_syringe_visit_id'), ['visit_id'], unique=False)

    op.create_table('preparation_unit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('scanned_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('by_user', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['by_user'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('visit_id', 'position')
    )
    with op.batch_alter_table('preparation_unit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_preparation_unit_visit_id'), ['visit_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('preparation_unit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_preparation_unit_visit_id'))

    op.drop_table('preparation_unit')
    with op.batch_alter_table('preparation_syringe', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_preparation_syringe_visit_id'))

    op.drop_table('preparation_syringe')
    with op.batch_alter_table('preparation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_preparation_kit_id'))

    op.drop_table('preparation')
