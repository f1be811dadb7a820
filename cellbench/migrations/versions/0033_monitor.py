"""kits by study, place and state with each place's fingerprint; a verification's fingerprint

The monitor's home asked, for each of the monitor's sites, whether its accountability figures are
still those last verified, by reading and hashing every blinded lot's figures there (thousands at
ten years). place_count holds the sums of the blinded-lot counters by place and state with the
place's fingerprint (place_counts.py), and each verification the fingerprint of the figures it
signed: the question is answered from a dozen rows per site. Both are filled here from what is
stored: the counters, and each verification's own figures. The study pages read a study's kits by
state from place_count, and its kits not yet in a blinded lot from a new covering index.

Revision ID: 0033_monitor
Revises: 0032_storage
Create Date: 2026-12-07 09:00:00
"""
import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0033_monitor'
down_revision = '0032_storage'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the weights are the application's (a fingerprint filled here is compared with those the moves keep)
    from cellbench import place_counts

    op.create_table('place_count',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('place', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kits', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_place_count_key', 'place_count', ['study_id', 'place', 'state'], unique=True)
    with op.batch_alter_table('accountability_verification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprint', sa.BigInteger(), nullable=True))
    # the study pages' kits not yet in a blinded lot (planned: 11,112 at ten years), counted from the
    # index alone instead of a look-up of each kit's row
    op.create_index('ix_kit_unpacked', 'kit', ['blinded_lot_id', 'study_id', 'state'])

    conn = op.get_bind()
    counters = [((s, p, b, st), n) for s, p, b, st, n in conn.execute(sa.text(
        "SELECT study_id, place, blinded_lot_id, state, kits FROM kit_count WHERE kits != 0"))]
    rows = [{"study_id": s, "place": p, "state": st, "kits": kits, "fingerprint": print_}
            for (s, p, st), (kits, print_) in sorted(place_counts.tally(counters).items())]
    if rows:
        conn.execute(sa.text("INSERT INTO place_count (study_id, place, state, kits, fingerprint) "
                             "VALUES (:study_id, :place, :state, :kits, :fingerprint)"), rows)
    verifications = list(conn.execute(sa.text("SELECT id, figures FROM accountability_verification")))
    if verifications:
        lot_ids = {code: lot_id for lot_id, code in conn.execute(sa.text("SELECT id, code FROM blinded_lot"))}
        conn.execute(sa.text("UPDATE accountability_verification SET fingerprint = :fingerprint WHERE id = :id"),
                     [{"id": row_id, "fingerprint": place_counts.of_figures(json.loads(figures), lot_ids)}
                      for row_id, figures in verifications])
    if conn.dialect.name == "postgresql":
        # the tables filled here get their statistics now, not when autovacuum next passes: until
        # then the planner took the new place_count for empty (pages 10-24x slower after the migration)
        op.execute("ANALYZE place_count")
        op.execute("ANALYZE accountability_verification")


def downgrade() -> None:
    op.drop_index('ix_kit_unpacked', table_name='kit')
    with op.batch_alter_table('accountability_verification', schema=None) as batch_op:
        batch_op.drop_column('fingerprint')
    op.drop_index('ix_place_count_key', table_name='place_count')
    op.drop_table('place_count')
