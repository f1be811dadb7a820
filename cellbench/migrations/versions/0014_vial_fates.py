"""vial fates: each vial made at fill gets one fate (placed, pulled for QC, retained, destroyed),
with a note (why destroyed, where retained) and its time

Vials filled before this revision were all created "stored", placed or not; those that were never
given a storage position have no fate yet: they become "filled", so the lot's storage step and
release gate ask for them instead of packaging counting them as free.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 12:45:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vial', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fate_note', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('fate_at', cellbench.models.UTCTimestamp(length=27), nullable=True))
    # Only vials made at fill (code "...-Vnnn"); units received from a supplier ("-Unnn") are stock.
    op.execute("UPDATE vial SET state = 'filled' WHERE state = 'stored' AND storage_position IS NULL "
               "AND code LIKE '%-V%'")


def downgrade() -> None:
    op.execute("UPDATE vial SET state = 'stored' WHERE state = 'filled'")
    with op.batch_alter_table('vial', schema=None) as batch_op:
        batch_op.drop_column('fate_at')
        batch_op.drop_column('fate_note')
