"""step drafts: what an operator has typed or scanned on a step entry, kept until signed (not GMP data)

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06 12:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('step_draft',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('fields', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('saved_at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['step_entry.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('entry_id', 'user_id')
    )
    with op.batch_alter_table('step_draft', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_step_draft_entry_id'), ['entry_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('step_draft', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_step_draft_entry_id'))
    op.drop_table('step_draft')
