"""outbound: how many recipients each queued message was queued for

The hourly sending limit counted queued messages only, so one message to the most
recipients a transaction takes counted as one. ``recipient_count`` keeps how many
recipients a message was queued for (``recipients`` shrinks as they are delivered),
so the limit can count recipients as well. Existing rows get the number of
recipients they still have: the best that is known of them.

Revision ID: 0009
Revises: 0008
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbound_messages') as batch:
        batch.add_column(sa.Column('recipient_count', sa.Integer(), nullable=False, server_default='0'))
    conn = op.get_bind()
    counts = [{"id": row_id, "n": _count(recipients)}
              for row_id, recipients in conn.execute(sa.text("SELECT id, recipients FROM outbound_messages"))]
    if counts:
        conn.execute(sa.text("UPDATE outbound_messages SET recipient_count = :n WHERE id = :id"), counts)


def _count(recipients: str | None) -> int:
    try:
        value = json.loads(recipients or "[]")
    except ValueError:
        return 0
    return len(value) if isinstance(value, list) else 0


def downgrade() -> None:
    with op.batch_alter_table('outbound_messages') as batch:
        batch.drop_column('recipient_count')
