"""IMAP: narrow per-message flag rows

A message's current flags and modseq move from the wide ``items`` row into
``message_flags`` (one narrow row per message): a STORE on every message of a
mailbox then writes a few dozen bytes per message instead of rewriting rows that
hold the inline body and the ENVELOPE/BODYSTRUCTURE cache. Every message gets its
row with its flags and modseq as they are; ``ix_items_mail_flags`` (the index that
stood in for the narrow rows) goes. Downgrade writes the current values back into
``items`` and restores the index.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'message_flags',
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('uid', sa.BigInteger(), nullable=False),
        sa.Column('flags', sa.Text(), nullable=False),
        sa.Column('modseq', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('item_id'),
    )
    op.execute(
        "INSERT INTO message_flags (item_id, collection_id, uid, flags, modseq) "
        "SELECT items.id, items.collection_id, items.uid, items.flags, items.modseq FROM items "
        "JOIN collections ON collections.id = items.collection_id "
        "WHERE collections.kind = 'mailbox' AND items.uid IS NOT NULL")
    with op.batch_alter_table('message_flags', schema=None) as batch_op:
        batch_op.create_index('ix_message_flags_uid', ['collection_id', 'uid', 'flags', 'modseq'], unique=False)
        batch_op.create_index('ix_message_flags_modseq', ['collection_id', 'modseq'], unique=False)
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_mail_flags')


def downgrade() -> None:
    op.execute(
        "UPDATE items SET "
        "flags = (SELECT message_flags.flags FROM message_flags WHERE message_flags.item_id = items.id), "
        "modseq = (SELECT message_flags.modseq FROM message_flags WHERE message_flags.item_id = items.id) "
        "WHERE items.id IN (SELECT item_id FROM message_flags)")
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index('ix_items_mail_flags', ['collection_id', 'uid', 'flags', 'modseq'], unique=False)
    with op.batch_alter_table('message_flags', schema=None) as batch_op:
        batch_op.drop_index('ix_message_flags_modseq')
        batch_op.drop_index('ix_message_flags_uid')
    op.drop_table('message_flags')
