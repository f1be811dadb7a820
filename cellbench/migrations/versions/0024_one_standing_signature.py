"""one standing signature of a meaning per record: a partial unique index on signature
(entity_type, entity_id, meaning) where invalidated_at is null, the database's backstop against
two people signing the same move at once

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 19:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

STANDING = "invalidated_at IS NULL"
COLUMNS = ['entity_type', 'entity_id', 'meaning']


def upgrade() -> None:
    # A database written before the services claimed their rows may already hold duplicates (a
    # deviation closed twice by a race). They are GMP records: nothing here voids or deletes them.
    # The index leaves out all but the last of each such group, so a new signature still clashes
    # with that one, and the duplicates are named, for QA to handle by deviation.
    bind = op.get_bind()
    doubles = bind.execute(sa.text(
        f"SELECT entity_type, entity_id, meaning, COUNT(*), MAX(id) FROM signature WHERE {STANDING} "  # noqa: S608
        "GROUP BY entity_type, entity_id, meaning HAVING COUNT(*) > 1")).all()
    older: list[int] = []
    for entity_type, entity_id, meaning, count, last in doubles:
        print(f"cellbench: {count} standing '{meaning}' signatures on {entity_type} {entity_id} "
              "(signed at once before this version); left as they are, raise a deviation to assess them.")
        older += [int(i) for i in bind.execute(sa.text(
            f"SELECT id FROM signature WHERE {STANDING} AND entity_type = :t AND entity_id = :e "  # noqa: S608
            "AND meaning = :m AND id <> :last"), {"t": entity_type, "e": entity_id, "m": meaning, "last": last})
            .scalars()]
    where = STANDING + (f" AND id NOT IN ({', '.join(str(i) for i in sorted(older))})" if older else "")
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.create_index('uq_signature_standing', COLUMNS, unique=True,
                              sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def downgrade() -> None:
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_index('uq_signature_standing')
