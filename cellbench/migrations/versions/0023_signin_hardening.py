"""sign-in hardening: when an account was locked (the lock lifts itself), and failed sign-in
attempts by keyed hashes of username and address (rate limiting across workers)

Revision ID: 0023
Revises: 0020
Create Date: 2026-12-06 17:20:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import cellbench.models

revision = '0023'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locked_at', cellbench.models.UTCTimestamp(length=27), nullable=True))
    op.create_table('signin_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', cellbench.models.UTCTimestamp(length=27), nullable=False),
    sa.Column('username_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('address_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signin_attempt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signin_attempt_username_key'), ['username_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_signin_attempt_address_key'), ['address_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('signin_attempt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signin_attempt_address_key'))
        batch_op.drop_index(batch_op.f('ix_signin_attempt_username_key'))
    op.drop_table('signin_attempt')
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('locked_at')
