"""mail: the search backlog (messages whose SEARCH rows are still to be written)

Deliveries no longer write a message's header and text rows in their own
transaction: they note the message in ``search_backlog`` and the server's
indexer writes the rows once deliveries pause; a SEARCH first indexes what is
still noted for its mailbox. Existing messages are all indexed already, so the
table starts empty. Downgrade hands what is still in the backlog to the earlier
revisions' own lazy index: those messages get a NULL ENVELOPE cache, which makes
the first FETCH or SEARCH that meets them compute the cache and the SEARCH rows
(storage/mail_views.py), so dropping the table leaves none unsearchable.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'search_backlog',
        sa.Column('item_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('item_id'),
    )


def downgrade() -> None:
    op.execute("UPDATE items SET imap_envelope = NULL WHERE id IN (SELECT item_id FROM search_backlog)")
    op.drop_table('search_backlog')
