"""items: the inline body becomes the last column of the row (SQLite)

SQLite stores a row's columns in declaration order and spills what does not fit
on the page into a chain of overflow pages. ``inline_body`` (a whole message or
file, up to tens of KiB) came right after the first few columns, so reading any
later column (``size``, the ENVELOPE/BODYSTRUCTURE cache, the index columns)
walked the body's overflow chain: a ``FETCH 1:* (FLAGS ENVELOPE)`` read every
message's body pages without using them. Moved to the end of the row, the other
columns sit in the row's first (local) bytes and the body's pages are read only
when the body is.

SQLite has no "move column": a new column is added (at the end), each body is
moved into it and the old column emptied in the same statement (so a row never
holds two copies and the pages an old body frees are reused by the next row's),
then the old column is dropped and the new one renamed. Indexes, foreign keys
and the rows of every other table stay as they are (recreating ``items`` would
fire ON DELETE CASCADE into the tables that reference it). Needs SQLite 3.35
(DROP COLUMN); an older SQLite keeps the old layout, which is only slower.

PostgreSQL already keeps values this large out of line (TOAST): nothing to do.
Downgrade changes nothing: where the column sits means nothing to earlier revisions.

Revision ID: 0007
Revises: 0006
"""

import logging
import sqlite3

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    if sqlite3.sqlite_version_info < (3, 35, 0):
        log.warning("SQLite %s has no DROP COLUMN: items.inline_body stays where it is", sqlite3.sqlite_version)
        return
    op.execute("ALTER TABLE items ADD COLUMN inline_body_last BLOB")
    op.execute("UPDATE items SET inline_body_last = inline_body, inline_body = NULL WHERE inline_body IS NOT NULL")
    op.execute("ALTER TABLE items DROP COLUMN inline_body")
    op.execute("ALTER TABLE items RENAME COLUMN inline_body_last TO inline_body")


def downgrade() -> None:
    pass
