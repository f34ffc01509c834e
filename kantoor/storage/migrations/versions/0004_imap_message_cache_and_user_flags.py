"""imap per-user flags and stored envelope

IMAP message cache on items (ENVELOPE/BODYSTRUCTURE/BODY wire forms, the Date
header's day), the \\Recent counter on collections, and the tables SEARCH and
shared mailboxes use: decoded headers, decoded text, per-user system flags.
Messages stored before this revision keep NULL cache columns; the Store fills
them in the first time they are used.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('imap_envelope', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('imap_bodystructure', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('imap_body', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('sent_date', sa.Date(), nullable=True))
        batch_op.create_index('ix_items_collection_modseq', ['collection_id', 'modseq'], unique=False)
        batch_op.create_index('ix_items_mail_flags', ['collection_id', 'uid', 'flags', 'modseq'], unique=False)
        batch_op.create_index('ix_items_unindexed_mail', ['collection_id'], unique=False,
                              sqlite_where=sa.text('imap_envelope IS NULL'),
                              postgresql_where=sa.text('imap_envelope IS NULL'))
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recent_uid', sa.BigInteger(), nullable=False, server_default='0'))

    op.create_table(
        'message_headers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('message_headers', schema=None) as batch_op:
        batch_op.create_index('ix_message_headers_item_name', ['item_id', 'name'], unique=False)

    op.create_table(
        'message_texts',
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('item_id'),
    )

    op.create_table(
        'mail_user_flags',
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('principal_id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('flags', sa.Text(), nullable=False),
        sa.Column('modseq', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('item_id', 'principal_id'),
    )
    with op.batch_alter_table('mail_user_flags', schema=None) as batch_op:
        batch_op.create_index('ix_mail_user_flags_view', ['collection_id', 'principal_id', 'modseq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mail_user_flags', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_user_flags_view')
    op.drop_table('mail_user_flags')
    op.drop_table('message_texts')
    with op.batch_alter_table('message_headers', schema=None) as batch_op:
        batch_op.drop_index('ix_message_headers_item_name')
    op.drop_table('message_headers')
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.drop_column('recent_uid')
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_unindexed_mail')
        batch_op.drop_index('ix_items_mail_flags')
        batch_op.drop_index('ix_items_collection_modseq')
        batch_op.drop_column('sent_date')
        batch_op.drop_column('imap_body')
        batch_op.drop_column('imap_envelope')
        batch_op.drop_column('imap_bodystructure')
