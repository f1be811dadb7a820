"""a site reader's notifications without her audit trail: who queued each message, on its row

A site person's list held the messages her own unblindings queued, found by reading her "notification
queued" audit events: at ten years, every event of hers (94-133 ms a page on SQLite, growing with
the trail). The author is now written on the row when the message is queued (queued_by), back-filled
here from the same events, and two indexes serve the list one branch at a time, newest first: a
site's and study's messages by audience and state, and an author's by kind and state.

Revision ID: 0034_notify
Revises: 0033_monitor
Create Date: 2026-12-07 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0034_notify'
down_revision = '0033_monitor'
branch_labels = None
depends_on = None

# The author of a message is the user of its "notification queued" event (queue() writes one per
# message, in its transaction); the earliest, should a copied trail hold more than one.
BACKFILL = sa.text(
    "UPDATE notification SET queued_by = ("
    " SELECT e.user_id FROM audit_event e WHERE e.entity_type = 'notification'"
    " AND e.entity_id = CAST(notification.id AS VARCHAR(128)) AND e.action = 'notification queued'"
    " ORDER BY e.seq LIMIT 1)")


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queued_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_notification_queued_by', 'app_user', ['queued_by'], ['id'])
    op.execute(BACKFILL)
    op.create_index('ix_notification_scope', 'notification', ['site_id', 'study_id', 'audience', 'state', 'id'])
    op.create_index('ix_notification_author', 'notification', ['queued_by', 'kind', 'state', 'id'])
    if op.get_bind().dialect.name == "postgresql":
        # the back-filled column's statistics now, not when autovacuum next passes: until then the
        # planner knew queued_by only as empty and chose its plans for the author's branch on that
        op.execute("ANALYZE notification")


def downgrade() -> None:
    op.drop_index('ix_notification_author', table_name='notification')
    op.drop_index('ix_notification_scope', table_name='notification')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_constraint('fk_notification_queued_by', type_='foreignkey')
        batch_op.drop_column('queued_by')
