"""lot state long enough for initial_certified

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:29:18.974639
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lot', schema=None) as batch_op:
        batch_op.alter_column('state',
               existing_type=sa.VARCHAR(length=16),
               type_=sa.String(length=24),
               existing_nullable=False)
        batch_op.alter_column('state_before_hold',
               existing_type=sa.VARCHAR(length=16),
               type_=sqlmodel.sql.sqltypes.AutoString(length=24),
               existing_nullable=True)



def downgrade() -> None:
    with op.batch_alter_table('lot', schema=None) as batch_op:
        batch_op.alter_column('state_before_hold',
               existing_type=sqlmodel.sql.sqltypes.AutoString(length=24),
               type_=sa.VARCHAR(length=16),
               existing_nullable=True)
        batch_op.alter_column('state',
               existing_type=sa.String(length=24),
               type_=sa.VARCHAR(length=16),
               existing_nullable=False)

