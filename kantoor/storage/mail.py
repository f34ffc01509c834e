"""Messages: delivery, the one call SMTP and IMAP APPEND share.

Delivery computes the message index once (:mod:`kantoor.storage.message_index`:
ENVELOPE/BODYSTRUCTURE wire forms, decoded headers and text) and stores it with
the message; COPY and MOVE reuse it (:mod:`kantoor.storage.imap_state`). What IMAP
reads is in :mod:`kantoor.storage.mail_views`, shared mailboxes in
:mod:`kantoor.storage.shared_mail`; both are part of :class:`MailMixin`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import BinaryIO

from sqlalchemy import select

from kantoor.storage.errors import NotFound
from kantoor.storage.indexing import ItemIndex
from kantoor.storage.mail_flags import check_flags_size, is_private_view, split_flags
from kantoor.storage.mail_views import MailViewsMixin, _index_columns, _index_rows
from kantoor.storage.message_index import MAX_PARSE, index_message_bytes
from kantoor.storage.models import Collection, Item, MailUserFlags, utcnow
from kantoor.storage.names import normalize_flags
from kantoor.storage.shared_mail import SharedMailMixin


class MailMixin(MailViewsMixin, SharedMailMixin):
    # ------------------------------------------------------------------ mail
    def mailbox(self, owner_id: int, name: str, actor: int | None = None) -> Collection:
        if name.upper() == "INBOX":
            name = "INBOX"
        return self.find_collection(owner_id, "mailbox", name, actor)

    def deliver_message(
        self,
        mailbox_id: int,
        raw: bytes | BinaryIO,
        actor: int | None = None,
        flags: Iterable[str] = (),
        internaldate: dt.datetime | None = None,
        max_size: int | None = None,
    ) -> Item:
        """Store a message in a mailbox with the next UID: SMTP delivery and IMAP APPEND both call this."""
        return self.deliver_message_to_mailboxes([mailbox_id], raw, actor, max_size, flags, internaldate)[mailbox_id]

    def list_messages(self, mailbox_id: int, actor: int | None = None) -> list[Item]:
        """Every message in a mailbox, in UID order (for tools and tests; IMAP uses the views below)."""
        with self.read() as s:
            coll = s.get(Collection, mailbox_id)
            if coll is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            self.access.authorize(s, actor, "read", coll)
            return list(s.scalars(select(Item).where(Item.collection_id == mailbox_id).order_by(Item.uid)))

    # ------------------------------------------------------------------ multi-recipient delivery
    # (added for SMTP: one DATA reply covers every recipient, so delivery to them is all or nothing)
    def deliver_message_to_mailboxes(
        self,
        mailbox_ids: Iterable[int],
        raw: bytes | BinaryIO,
        actor: int | None = None,
        max_size: int | None = None,
        flags: Iterable[str] = (),
        internaldate: dt.datetime | None = None,
    ) -> dict[int, Item]:
        """Store one message in several mailboxes in ONE transaction: all get it, or none does.

        Per mailbox: the ``bind`` right, quota, the next UID, the change log; the body
        is stored once and indexed once. Returns the new item by mailbox id.
        """
        ids = sorted(set(mailbox_ids))  # a fixed lock order: two deliveries never deadlock
        stored, sha, data = self._store_body(raw, max_size)
        if data is None:
            with self.blobs.open(sha) as fh:
                data = fh.read(MAX_PARSE)
        cache = index_message_bytes(data)
        # The item's listing columns come from the same parse (not a second one with the email header registry).
        index = ItemIndex(subject=cache.subject, from_addr=cache.from_addr, to_addr=cache.to_addr,
                          message_id=cache.message_id, date=cache.date)
        wanted = normalize_flags(flags)
        check_flags_size(wanted)
        items: dict[int, Item] = {}
        with self.write() as s:
            for mailbox_id in ids:
                coll = self._locked_collection(s, mailbox_id)
                if coll.kind != "mailbox":
                    raise NotFound("not a mailbox")
                self.access.authorize(s, actor, "bind", coll)
                self.quota.reserve(s, coll.owner_id, "mail", stored.size)
                uid = coll.uidnext
                coll.uidnext = uid + 1
                private = is_private_view(coll, actor)
                system, keywords = split_flags(wanted)
                item = Item(collection_id=coll.id, name=str(uid), uid=uid, created_at=utcnow(),
                            internaldate=internaldate or utcnow(),
                            flags=" ".join(keywords if private else wanted), **_index_columns(cache))
                self._apply_body(s, item, stored, sha, "message/rfc822", index)
                s.add(item)
                item.modseq = self._record_change(s, coll, item.name, uid, "created")
                s.flush()  # makes the Blob row visible to the next mailbox's refcount update
                _index_rows(s, item.id, cache)
                if private and system:
                    s.add(MailUserFlags(item_id=item.id, principal_id=actor, collection_id=coll.id,
                                        flags=" ".join(system), modseq=item.modseq))
                items[mailbox_id] = item
            self._fault("before_commit")
        return items
