"""user scope: the sites and studies a site-role user works for

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# (table, the scope column, the table it names)
LINKS = (("user_site", "site_id", "site"), ("user_study", "study_id", "study"))


def upgrade() -> None:
    for table, column, target in LINKS:
        op.create_table(table,
                        sa.Column('user_id', sa.Integer(), nullable=False),
                        sa.Column(column, sa.Integer(), nullable=False),
                        sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ),
                        sa.ForeignKeyConstraint([column], [f'{target}.id'], ),
                        sa.PrimaryKeyConstraint('user_id', column))
        op.create_index(f'ix_{table}_{column}', table, [column], unique=False)


def downgrade() -> None:
    for table, column, _target in LINKS:
        op.drop_index(f'ix_{table}_{column}', table_name=table)
        op.drop_table(table)
