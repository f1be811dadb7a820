"""the deviation list and the signed counts read along indexes, a page at a time

The deviation list ordered every deviation by a severity rank computed per row, and the API's list
of a study's signed counts sorted every count of the study, at each page: both grew with the
years. The severity names sort in their rank's order, so (severity, raised_at, number), with and
without the state before it, serves the default order; (raised_at, number) the oldest-first one;
(study_id, at, id) the counts newest first.

Revision ID: 0040_records
Revises: 0039_statistics
Create Date: 2026-12-07 15:40:00
"""
from alembic import op

revision = '0040_records'
down_revision = '0039_statistics'
branch_labels = None
depends_on = None

DEVIATION = {'ix_deviation_severity_age': ['severity', 'raised_at', 'number'],
             'ix_deviation_state_severity_age': ['state', 'severity', 'raised_at', 'number'],
             'ix_deviation_age': ['raised_at', 'number']}


def upgrade() -> None:
    for name, columns in DEVIATION.items():
        op.create_index(name, 'deviation', columns)
    op.create_index('ix_reconciliation_study_at', 'reconciliation', ['study_id', 'at', 'id'])
    # both engines: a new index with no statistics misleads SQLite's planner (0036)
    op.execute("ANALYZE deviation")
    op.execute("ANALYZE reconciliation")


def downgrade() -> None:
    op.drop_index('ix_reconciliation_study_at', table_name='reconciliation')
    for name in reversed(DEVIATION):
        op.drop_index(name, table_name='deviation')
