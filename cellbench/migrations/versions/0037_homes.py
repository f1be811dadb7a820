"""running counts of visits by study, site and state, filled from the rows; the running
preparations along (state, use-by)

The preparer's home page and /preparation counted the dispensed and the running visits at the
reader's sites by joining every visit in those states to its participant: at ten years 1,389 of
each, 2.1-2.5 ms a count on SQLite, and a hash join over every participant on PostgreSQL (the
home page grew 1.9x, /preparation 1.5-1.65x). The visit moves keep these counts from now on
(pharmacy/counts.py); the lines read a few rows.

The QC analyst's home line and /qc read every waiting lot and its results into Python to find
those with a lot-stage test still without a valid result (96 lots, 1,120 results at ten years):
the lots are now chosen in SQL, each lot's valid tests counted along (lot_id, invalidated_at,
test_code), and /qc shows a page of them with their count. The results nobody has reviewed were
found by reading every result: (review_signature_id, invalidated_at) hands over the unreviewed.

QA's, the pharmacist's and supply's home lines read the shipments and deviations in one state
by scanning them all (11,112 shipments at ten years): (state, id) hands over two and counts.

The running preparations, soonest use-by first, were sorted whole to show the first fifty:
(state, use_by, participant_id, treatment) hands them over in order, one state at a time.

Revision ID: 0037_homes
Revises: 0036_studies
Create Date: 2026-12-07 12:30:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0037_homes'
down_revision = '0036_studies'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('visit_count',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('visits', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('study_id', 'site_id', 'state')
    )
    # An existing database's visits are counted once here (pharmacy.counts.refill does the same).
    op.execute("INSERT INTO visit_count (study_id, site_id, state, visits) "
               "SELECT p.study_id, p.site_id, v.state, COUNT(*) FROM visit v JOIN participant p ON p.id = v.participant_id "
               "GROUP BY p.study_id, p.site_id, v.state")
    op.create_index('ix_visit_state_use_by', 'visit', ['state', 'use_by', 'participant_id', 'treatment'])
    op.create_index('ix_qc_result_lot_valid', 'qc_result', ['lot_id', 'invalidated_at', 'test_code'])
    op.create_index('ix_qc_result_unreviewed', 'qc_result', ['review_signature_id', 'invalidated_at'])
    op.create_index('ix_shipment_state_id', 'shipment', ['state', 'id'])
    op.create_index('ix_deviation_state_id', 'deviation', ['state', 'id'])
    # Both engines learn the new index's spread: without it SQLite took it for the visits due
    # (ordered by window end) too, and sorted every dispensed visit.
    op.execute("ANALYZE visit")
    for table in ("qc_result", "shipment", "deviation"):
        op.execute(f"ANALYZE {table}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE visit_count")


def downgrade() -> None:
    op.drop_index('ix_deviation_state_id', table_name='deviation')
    op.drop_index('ix_shipment_state_id', table_name='shipment')
    op.drop_index('ix_qc_result_unreviewed', table_name='qc_result')
    op.drop_index('ix_qc_result_lot_valid', table_name='qc_result')
    op.drop_index('ix_visit_state_use_by', table_name='visit')
    op.drop_table('visit_count')
