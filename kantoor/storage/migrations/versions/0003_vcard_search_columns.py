"""vCard search columns for addressbook-query text-match (FN, N, EMAIL, TEL, NICKNAME, ORG)

Existing vCards stored inline in their row are indexed here. Bodies in blob files
(large cards, usually with photos) are not reachable from a migration, which sees
only the database; their columns stay NULL, which the query treats as "not
indexed: always a candidate, matched exactly from the body", and the next write
of such a card fills them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS = ("card_fn", "card_n", "card_email", "card_tel", "card_nickname", "card_org")


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.Text(), nullable=True))
    _backfill()


def _backfill() -> None:
    from kantoor.storage.card_search import COLUMN_OF_PROPERTY, card_values, search_column

    items = sa.table("items", sa.column("id", sa.Integer), sa.column("component", sa.String),
                     sa.column("inline_body", sa.LargeBinary), *(sa.column(c, sa.Text) for c in COLUMNS))
    connection = op.get_bind()
    last_id = 0
    while True:  # in batches, so a large database is never loaded whole
        rows = connection.execute(
            sa.select(items.c.id, items.c.inline_body)
            .where(items.c.component == "VCARD", items.c.inline_body.is_not(None), items.c.id > last_id)
            .order_by(items.c.id).limit(500)).all()
        if not rows:
            return
        for item_id, body in rows:
            values = card_values(bytes(body).decode("utf-8", "replace"))
            connection.execute(items.update().where(items.c.id == item_id).values(
                **{column: search_column(values.get(name, ())) for name, column in COLUMN_OF_PROPERTY.items()}))
        last_id = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
