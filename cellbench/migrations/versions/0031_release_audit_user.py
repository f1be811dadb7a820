"""'what I did lately' on every home page: a user's newest audit events along one index

Every home page reads `audit.trail(user=<me>, limit=10)`, newest first. With user_id alone
indexed, PostgreSQL finds a user's events (738,864 for the busiest at ten years) and sorts them
for ten rows, or walks the whole trail backwards; (user_id, seq) hands over the ten newest in
order. It replaces the user_id index, whose every use it serves.

Revision ID: 0031_release
Revises: 0030_site
Create Date: 2026-12-07 05:50:00
"""
from alembic import op

revision = '0031_release'
down_revision = '0030_site'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_audit_user_seq', 'audit_event', ['user_id', 'seq'])
    op.drop_index('ix_audit_event_user_id', table_name='audit_event')


def downgrade() -> None:
    op.create_index('ix_audit_event_user_id', 'audit_event', ['user_id'])
    op.drop_index('ix_audit_user_seq', table_name='audit_event')
