"""deviation links: the kit, visit or shipment a deviation concerns

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

LINKS = (("kit_id", "kit"), ("visit_id", "visit"), ("shipment_id", "shipment"))
INDEXED = ("kit_id", "shipment_id")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a NULL column with its REFERENCES clause in place. Batch mode would copy the
        # table and drop the old one, which trips qc_result's foreign key to deviation on a
        # database with OOS deviations in it (foreign keys are on).
        for column, table in LINKS:
            op.execute(f"ALTER TABLE deviation ADD COLUMN {column} INTEGER REFERENCES {table} (id)")
    else:
        for column, table in LINKS:
            op.add_column('deviation', sa.Column(column, sa.Integer(), nullable=True))
            op.create_foreign_key(f'fk_deviation_{column}', 'deviation', table, [column], ['id'])
    for column in INDEXED:
        op.create_index(f'ix_deviation_{column}', 'deviation', [column], unique=False)


def downgrade() -> None:
    for column in INDEXED:
        op.drop_index(f'ix_deviation_{column}', table_name='deviation')
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table('deviation', schema=None) as batch_op:
            for column, _table in LINKS:
                batch_op.drop_column(column)
    else:
        for column, _table in LINKS:
            op.drop_constraint(f'fk_deviation_{column}', 'deviation', type_='foreignkey')
            op.drop_column('deviation', column)
