"""outbound queue: DSN per recipient (RFC 3461), SMTPUTF8 flag; server notices

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dsn_recipients', sa.Text(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('delay_notified', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('smtputf8', sa.Boolean(), nullable=False, server_default=sa.false()))
    # The defaults were only for existing rows; the model sets every value.
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.alter_column('dsn_recipients', server_default=None)
        batch_op.alter_column('delay_notified', server_default=None)
        batch_op.alter_column('smtputf8', server_default=None)
    op.create_table('server_notices',
                    sa.Column('account_id', sa.Integer(), nullable=False),
                    sa.Column('kind', sa.String(length=32), nullable=False),
                    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('account_id', 'kind'))


def downgrade() -> None:
    op.drop_table('server_notices')
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.drop_column('smtputf8')
        batch_op.drop_column('delay_notified')
        batch_op.drop_column('dsn_recipients')
