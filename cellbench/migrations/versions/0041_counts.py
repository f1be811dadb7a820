"""running counts of the kits not yet in a blinded lot, and of the blinded lots in each place's figures

/studies counted each study's kits not yet in a blinded lot from the kit rows (11,112 at ten years,
growth 2.1 from a tenth of the data), and the monitor's verification API counted the distinct
blinded lots of a site's counters (4,167, growth 1.7-2.5). Both are now running counts kept with
every kit move (unpackaged_counts.py, place_counts.py); here they are filled once from what is
stored: the kit rows without a blinded lot, and the blinded-lot counters (kit_count).

Revision ID: 0041_counts
Revises: 0040_records
Create Date: 2026-12-07 15:30:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0041_counts'
down_revision = '0040_records'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the states in no category of the figures (planned), as the application's moves decide them
    from cellbench.kit_categories import category_of
    from cellbench.models import KitState

    op.create_table('unpackaged_count',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('place', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kits', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('study_id', 'place', 'state')
    )
    op.create_table('place_lot_count',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('place', sa.Integer(), nullable=False),
    sa.Column('blinded_lots', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('study_id', 'place')
    )
    # An existing database's counts, filled once here (kit_counts.refill does the same).
    op.execute("INSERT INTO unpackaged_count (study_id, place, state, kits) "
               "SELECT study_id, COALESCE(site_id, 0), state, COUNT(*) FROM kit WHERE blinded_lot_id IS NULL "
               "GROUP BY study_id, COALESCE(site_id, 0), state")
    outside = [state.value for state in KitState if category_of(state) is None]
    op.get_bind().execute(sa.text(
        "INSERT INTO place_lot_count (study_id, place, blinded_lots) "
        "SELECT study_id, place, COUNT(*) FROM (SELECT study_id, place, blinded_lot_id FROM kit_count "
        "WHERE state NOT IN :outside GROUP BY study_id, place, blinded_lot_id HAVING SUM(kits) > 0) AS held "
        "GROUP BY study_id, place").bindparams(sa.bindparam("outside", outside, expanding=True)))
    if op.get_bind().dialect.name == "postgresql":
        # the tables filled here get their statistics now, not when autovacuum next passes (0033)
        op.execute("ANALYZE unpackaged_count")
        op.execute("ANALYZE place_lot_count")


def downgrade() -> None:
    op.drop_table('place_lot_count')
    op.drop_table('unpackaged_count')
