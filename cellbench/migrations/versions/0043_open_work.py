"""the open work of the home pages, indexed apart from the years of closed work

Every supply manager's, pharmacist's and QA's home page asks for the stock counts that differ from
cellbench's, newest first; the supply manager's for the open resupply proposals; QA's and supply's
for the unblindings whose impact the sponsor has not had. Ten years keep thousands of counts,
nearly all balanced, thousands of decided proposals and a thousand unblindings whose impact went
long ago: each was read whole on every home page (1,389 counts, 3.6 ms on SQLite; an audit-trail
probe per unblinding, 4.8 ms). Now:

- partial indexes of the unbalanced counts by (at, id) and by (study_id, at, id): everyone's
  newest first, and a study's;
- an index of open_slot (1 while proposed, NULL after);
- unblinding.impact_sent_at, filled from the "unblinding impact sent" audit events (the first
  one's time), and a partial index of the unblindings where it is NULL.

Revision ID: 0043_open_work
Revises: 0042_custody_action
Create Date: 2026-12-07 22:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0043_open_work'
down_revision = '0042_custody_action'
branch_labels = None
depends_on = None

# as cellbench.models' UNBALANCED and IMPACT_UNSENT (a migration keeps its own copy: the model may change)
UNBALANCED = {"sqlite": "balanced = 0", "postgresql": "NOT balanced"}
IMPACT_UNSENT = "impact_sent_at IS NULL"
SENT = "unblinding impact sent"  # the action unblinding_impact.send records


def upgrade() -> None:
    for name, columns in (('ix_reconciliation_unbalanced', ['at', 'id']),
                          ('ix_reconciliation_study_unbalanced', ['study_id', 'at', 'id'])):
        op.create_index(name, 'reconciliation', columns, sqlite_where=sa.text(UNBALANCED["sqlite"]),
                        postgresql_where=sa.text(UNBALANCED["postgresql"]))
    op.create_index('ix_resupply_proposal_open', 'resupply_proposal', ['open_slot'])
    with op.batch_alter_table('unblinding') as batch:
        batch.add_column(sa.Column('impact_sent_at', sa.String(length=27), nullable=True))  # UTCTimestamp's text
    op.execute(sa.text(
        "UPDATE unblinding SET impact_sent_at = (SELECT min(e.at) FROM audit_event e WHERE e.entity_type = 'unblinding' "
        "AND e.entity_id = CAST(unblinding.id AS VARCHAR(20)) AND e.action = :sent)").bindparams(sent=SENT))
    op.create_index('ix_unblinding_impact_unsent', 'unblinding', ['id'], sqlite_where=sa.text(IMPACT_UNSENT),
                    postgresql_where=sa.text(IMPACT_UNSENT))
    for table in ('reconciliation', 'resupply_proposal', 'unblinding'):
        op.execute(f"ANALYZE {table}")  # both engines: a new index with no statistics misleads SQLite (0036)


def downgrade() -> None:
    op.drop_index('ix_unblinding_impact_unsent', table_name='unblinding')
    with op.batch_alter_table('unblinding') as batch:
        batch.drop_column('impact_sent_at')
    op.drop_index('ix_resupply_proposal_open', table_name='resupply_proposal')
    op.drop_index('ix_reconciliation_study_unbalanced', table_name='reconciliation')
    op.drop_index('ix_reconciliation_unbalanced', table_name='reconciliation')
