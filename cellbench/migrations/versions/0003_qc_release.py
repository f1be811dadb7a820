"""qc and release

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:57:23.622271
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('lot_decision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('from_state', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('to_state', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('qc_results_up_to', sa.Integer(), nullable=True),
    sa.Column('signature_id', sa.Integer(), nullable=True),
    sa.Column('created_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.ForeignKeyConstraint(['signature_id'], ['signature.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('lot_decision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_decision_lot_id'), ['lot_id'], unique=False)

    op.create_table('lot_review',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('up_to_seq', sa.Integer(), nullable=False),
    sa.Column('signature_id', sa.Integer(), nullable=False),
    sa.Column('created_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.ForeignKeyConstraint(['signature_id'], ['signature.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('lot_review', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_review_lot_id'), ['lot_id'], unique=False)

    op.create_table('storage_excursion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('observed_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('highest_temperature', sa.Float(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('assessment', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('acceptable', sa.Boolean(), nullable=True),
    sa.Column('assessed_by', sa.Integer(), nullable=True),
    sa.Column('assessed_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.ForeignKeyConstraint(['assessed_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.ForeignKeyConstraint(['recorded_by'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('storage_excursion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storage_excursion_lot_id'), ['lot_id'], unique=False)

    op.create_table('pending_test',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('decision_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('test_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('resolved_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.ForeignKeyConstraint(['decision_id'], ['lot_decision.id'], ),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.ForeignKeyConstraint(['owner_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('decision_id', 'test_code')
    )
    with op.batch_alter_table('pending_test', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_test_decision_id'), ['decision_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pending_test_lot_id'), ['lot_id'], unique=False)

    op.create_table('qc_result',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('test_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sample_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('verdict', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('entered_by', sa.Integer(), nullable=False),
    sa.Column('entered_by_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('entered_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('retest_of', sa.Integer(), nullable=True),
    sa.Column('review_signature_id', sa.Integer(), nullable=True),
    sa.Column('invalidated_at', cellbench.models.UTCTimestamp(length=27), nullable=True),
    sa.Column('invalidation_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('invalidation_signature_id', sa.Integer(), nullable=True),
    sa.Column('deviation_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['deviation_id'], ['deviation.id'], ),
    sa.ForeignKeyConstraint(['entered_by'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['invalidation_signature_id'], ['signature.id'], ),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], ),
    sa.ForeignKeyConstraint(['retest_of'], ['qc_result.id'], ),
    sa.ForeignKeyConstraint(['review_signature_id'], ['signature.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('qc_result', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qc_result_lot_id'), ['lot_id'], unique=False)
    # The state after a complete batch record was called "cryopreserved"; it is QC pending for
    # cell and saline lots alike.
    op.execute("UPDATE lot SET state = 'qc_pending' WHERE state = 'cryopreserved'")
    op.execute("UPDATE lot SET state_before_hold = 'qc_pending' WHERE state_before_hold = 'cryopreserved'")


def downgrade() -> None:
    with op.batch_alter_table('qc_result', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qc_result_lot_id'))

    op.drop_table('qc_result')
    with op.batch_alter_table('pending_test', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_test_lot_id'))
        batch_op.drop_index(batch_op.f('ix_pending_test_decision_id'))

    op.drop_table('pending_test')
    with op.batch_alter_table('storage_excursion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_storage_excursion_lot_id'))

    op.drop_table('storage_excursion')
    with op.batch_alter_table('lot_review', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_review_lot_id'))

    op.drop_table('lot_review')
    with op.batch_alter_table('lot_decision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_decision_lot_id'))

    op.drop_table('lot_decision')
