"""notifications delivered: the notification table becomes a queue (recipients, audience, study and
site, state, attempts, next attempt, last error, a sender's claim); users get an email address

Rows written before stay valid: a message with sent_at is "sent", the others "pending"; their one
address becomes their recipients, and they were all unblinded messages to the sponsor.

Revision ID: 0021
Revises: 0016
Create Date: 2026-12-06 16:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import cellbench.models


revision = '0021'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recipients', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('audience', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='unblinded'))
        batch_op.add_column(sa.Column('study_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('site_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='pending'))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', cellbench.models.UTCTimestamp(length=27), nullable=True))
        batch_op.add_column(sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', cellbench.models.UTCTimestamp(length=27), nullable=True))
        batch_op.create_foreign_key('fk_notification_study_id', 'study', ['study_id'], ['id'])
        batch_op.create_foreign_key('fk_notification_site_id', 'site', ['site_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_notification_state'), ['state'], unique=False)
    op.execute("UPDATE notification SET recipients = to_address")
    op.execute("UPDATE notification SET state = 'sent' WHERE sent_at IS NOT NULL")
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('email')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_state'))
        batch_op.drop_constraint('fk_notification_site_id', type_='foreignkey')
        batch_op.drop_constraint('fk_notification_study_id', type_='foreignkey')
        for column in ('claimed_until', 'claimed_by', 'last_error', 'next_attempt_at', 'attempts', 'state',
                       'site_id', 'study_id', 'audience', 'recipients'):
            batch_op.drop_column(column)
