"""checkpoints a database owner cannot forge: the chain head's signature by the checkpoint key,
and the signed checkpoints of (sequence, head hash, time)

Revision ID: 0025
Revises: 0023
Create Date: 2026-12-06 19:30:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=88), nullable=True))
    op.create_table('checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('head_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=88), nullable=False),
    sa.Column('why', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('checkpoint')
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.drop_column('signature')
