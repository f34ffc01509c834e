"""domains: internationalized domain names stored as their A-labels

``kantoor domain add`` now stores one spelling of a domain, the A-label
(``xn--…``) of an internationalized name, and compares addresses' domains in
that spelling; earlier versions stored the name as typed, so a U-label domain
added before would no longer be one of the server's. Its row is rewritten to
the A-label (the DKIM key file follows on first use, kantoor/smtpd/dkim_keys.py).
A name that has no A-label form, or whose A-label is stored already, is left as
it is. Downgrade keeps the A-labels: earlier versions read them as names too.

Revision ID: 0010
Revises: 0009
"""

import idna
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, name FROM domains")).all()
    taken = {name for _, name in rows}
    for row_id, name in rows:
        if name.isascii():
            continue
        try:
            a_label = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            continue
        if a_label in taken:
            continue
        conn.execute(sa.text("UPDATE domains SET name = :name WHERE id = :id"), {"name": a_label, "id": row_id})
        taken.add(a_label)


def downgrade() -> None:
    pass
