"""Mailbox operations only IMAP needs: bulk expunge, atomic copy/move, rename, conditional flag stores.

Each one is ONE write transaction on the shared write path (rights through the
access policy, quota through the quota policy, every touched message in the
change log), so a failure — a missing right, a full quota — leaves nothing done.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, text, update
from sqlalchemy.orm import Session, undefer

from kantoor.storage.errors import AlreadyExists, NotFound
from kantoor.storage.mail_flags import (
    check_flags_size,
    has_flag,
    is_private_view,
    split_flags,
    user_flags_join,
    view_flags,
    view_modseq,
)
from kantoor.storage.models import (
    Blob,
    Change,
    Collection,
    Grant,
    Item,
    MailUserFlags,
    MessageFlags,
    MessageHeader,
    MessageText,
    SearchBacklog,
    utcnow,
)
from kantoor.storage.names import normalize_flags
from kantoor.storage.notify import CHANNEL, ChangeEvent
from kantoor.storage.search_backlog import SearchBacklogMixin


@dataclass
class FlagUpdate:
    """What a conditional flag store did: new (flags, modseq) by UID, and UIDs it refused (RFC 7162 3.1.3)."""

    updated: dict[int, tuple[list[str], int]] = field(default_factory=dict)
    unchanged: dict[int, tuple[list[str], int]] = field(default_factory=dict)  # matched, flags already so
    modified: list[int] = field(default_factory=list)


def _message_copy(item: Item, collection_id: int, uid: int, flags: str) -> Item:
    """A new row for ``item`` in another mailbox: same body reference, index columns and date."""
    return Item(
        collection_id=collection_id, name=str(uid), uid=uid, blob_sha256=item.blob_sha256,
        inline_body=item.inline_body, size=item.size, etag=item.etag, content_type=item.content_type,
        created_at=utcnow(), updated_at=utcnow(), internaldate=item.internaldate, flags=flags,
        subject=item.subject, from_addr=item.from_addr, to_addr=item.to_addr, message_id=item.message_id,
        imap_envelope=item.imap_envelope, imap_bodystructure=item.imap_bodystructure, imap_body=item.imap_body,
        sent_date=item.sent_date,
    )


def _copy_index_rows(s: Session, source_item_id: int, new_item_id: int) -> bool:
    """The copy shares the original's SEARCH rows (headers, text): copied in SQL, never recomputed. An
    original still in the search backlog has none yet: then the copy joins the backlog too (True)."""
    s.execute(insert(MessageHeader).from_select(
        ["item_id", "name", "value"],
        select(literal(new_item_id), MessageHeader.name, MessageHeader.value)
        .where(MessageHeader.item_id == source_item_id)))
    s.execute(insert(MessageText).from_select(
        ["item_id", "body"],
        select(literal(new_item_id), MessageText.body).where(MessageText.item_id == source_item_id)))
    return bool(s.execute(insert(SearchBacklog).from_select(
        ["item_id"], select(literal(new_item_id)).where(SearchBacklog.item_id == source_item_id))).rowcount)


def _chunks(ids: list[int], size: int = 900) -> Iterable[list[int]]:
    """``ids`` in slices short enough for one IN list (SQLite caps the bound parameters of a statement)."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


# A flag store naming more messages than this reads their UID range (and skips what it did not name).
RANGE_READ_ABOVE = 500

_CACHE = (undefer(Item.imap_envelope), undefer(Item.imap_bodystructure), undefer(Item.imap_body))


class ImapStateMixin(SearchBacklogMixin):
    # ------------------------------------------------------------------ expunge
    def expunge_messages(self, mailbox_id: int, uids: Iterable[int] | None = None,
                         actor: int | None = None) -> list[int]:
        """Remove the messages flagged \\Deleted (only those among ``uids`` when given); returns their UIDs.

        In a shared mailbox \\Deleted is the actor's own flag (see :mod:`kantoor.storage.mail_flags`).
        Selected in SQL: nothing is loaded for the messages that stay.
        """
        with self.write() as s:
            coll = self._locked_collection(s, mailbox_id)
            self.access.authorize(s, actor, "write", coll)
            private = is_private_view(coll, actor)
            query = (select(Item.id, Item.uid, Item.name, Item.size).select_from(MessageFlags)
                     .join(Item, Item.id == MessageFlags.item_id)
                     .where(MessageFlags.collection_id == coll.id, has_flag(private, "\\Deleted")))
            if private:
                query = query.outerjoin(MailUserFlags, user_flags_join(actor))
            if uids is not None:
                query = query.where(MessageFlags.uid.in_(list(uids)))
            doomed = list(s.execute(query.order_by(MessageFlags.uid)))
            if not doomed:
                return []
            ids = [row.id for row in doomed]
            self._release_blobs(s, select(Item.blob_sha256).where(Item.id.in_(ids), Item.blob_sha256.is_not(None)))
            freed = sum(int(row.size) for row in doomed)
            s.execute(delete(Grant).where(Grant.item_id.in_(ids)))
            s.execute(delete(MessageHeader).where(MessageHeader.item_id.in_(ids)))
            s.execute(delete(MessageText).where(MessageText.item_id.in_(ids)))
            s.execute(delete(SearchBacklog).where(SearchBacklog.item_id.in_(ids)))
            s.execute(delete(MailUserFlags).where(MailUserFlags.item_id.in_(ids)))
            s.execute(delete(MessageFlags).where(MessageFlags.item_id.in_(ids)))
            s.execute(delete(Item).where(Item.id.in_(ids)))
            self.quota.reserve(s, coll.owner_id, "mail", -freed)
            self._record_changes(s, coll, [(row.name, int(row.uid)) for row in doomed], "deleted")
            return [int(row.uid or 0) for row in doomed]

    # ------------------------------------------------------------------ copy and move
    def copy_messages(self, source_id: int, uids: Iterable[int], target_id: int, actor: int | None = None,
                      move: bool = False) -> list[tuple[int, int]]:
        """COPY (RFC 3501 6.4.7) or MOVE (RFC 6851) messages; returns (source UID, new UID) pairs in UID order.

        All or nothing: the target's owner is charged for every copy (a move between
        two mailboxes of one owner costs nothing; across owners it is charged to the
        target's owner and given back to the source's), and [OVERQUOTA] stores nothing.
        The stored ENVELOPE/BODYSTRUCTURE and SEARCH rows go along, never recomputed.
        The actor's flags (their own in a shared mailbox) go along too; other users'
        own flags stay behind with the mailbox they were set in.
        """
        if source_id == target_id and move:
            raise ValueError("cannot move messages into the mailbox they are in")
        wanted = sorted(set(int(u) for u in uids))
        with self.write() as s:
            # A fixed lock order: two opposite moves never deadlock.
            locked = {cid: self._locked_collection(s, cid) for cid in sorted({source_id, target_id})}
            source, target = locked[source_id], locked[target_id]
            if source.kind != "mailbox" or target.kind != "mailbox":
                raise NotFound("not a mailbox")
            self.access.authorize(s, actor, "write" if move else "read", source)
            self.access.authorize(s, actor, "bind", target)
            items = list(s.scalars(select(Item).options(*_CACHE)
                                   .where(Item.collection_id == source.id, Item.uid.in_(wanted))
                                   .order_by(Item.uid))) if wanted else []
            if not items:
                return []
            from_private, to_private = is_private_view(source, actor), is_private_view(target, actor)
            current = dict(s.execute(select(MessageFlags.item_id, MessageFlags.flags).where(
                MessageFlags.item_id.in_([i.id for i in items]))).all())
            own: dict[int, str] = {}
            if from_private:
                own = dict(s.execute(select(MailUserFlags.item_id, MailUserFlags.flags).where(
                    MailUserFlags.principal_id == actor, MailUserFlags.item_id.in_([i.id for i in items]))).all())
            total = sum(int(i.size) for i in items)
            if not move or source.owner_id != target.owner_id:
                self.quota.reserve(s, target.owner_id, "mail", total)
            if move and source.owner_id != target.owner_id:
                self.quota.reserve(s, source.owner_id, "mail", -total)
            pairs: list[tuple[int, int]] = []
            waiting: list[int] = []  # copies that joined the search backlog
            for item in items:
                old_uid, old_name = int(item.uid or 0), item.name
                new_uid = target.uidnext
                target.uidnext = new_uid + 1
                seen = view_flags(current.get(item.id, item.flags), own.get(item.id), from_private)
                system, keywords = split_flags(seen)
                flags = " ".join(keywords if to_private else seen)
                if move:
                    # The row itself moves: its body reference and index rows go along.
                    s.execute(delete(Grant).where(Grant.item_id == item.id))
                    s.execute(delete(MailUserFlags).where(MailUserFlags.item_id == item.id))
                    item.collection_id, item.uid, item.name = target.id, new_uid, str(new_uid)
                    item.flags = flags
                    item.updated_at = utcnow()
                    self._record_change(s, source, old_name, old_uid, "deleted")
                    item.modseq = self._record_change(s, target, item.name, new_uid, "created")
                    s.execute(update(MessageFlags).where(MessageFlags.item_id == item.id).values(
                        collection_id=target.id, uid=new_uid, flags=flags, modseq=item.modseq))
                    placed = item
                else:
                    placed = _message_copy(item, target.id, new_uid, flags)
                    if item.blob_sha256:
                        s.execute(update(Blob).where(Blob.sha256 == item.blob_sha256)
                                  .values(refcount=Blob.refcount + 1, updated_at=utcnow()))
                    s.add(placed)
                    placed.modseq = self._record_change(s, target, placed.name, new_uid, "created")
                s.flush()  # one UID at a time: a name clash shows here, inside the transaction
                if not move and _copy_index_rows(s, item.id, placed.id):
                    waiting.append(placed.id)
                if not move:
                    s.execute(insert(MessageFlags).values(item_id=placed.id, collection_id=target.id, uid=new_uid,
                                                          flags=flags, modseq=placed.modseq))
                if to_private and system:
                    s.add(MailUserFlags(item_id=placed.id, principal_id=actor, collection_id=target.id,
                                        flags=" ".join(system), modseq=placed.modseq))
                pairs.append((old_uid, new_uid))
            self._fault("before_commit")
        # Committed: this process's indexer writes the copies' rows with its own deliveries'.
        self.search_backlog.noted(waiting)
        return pairs

    # ------------------------------------------------------------------ rename
    def rename_mailbox(self, owner_id: int, old_path: str, new_path: str, actor: int | None = None) -> Collection:
        """RENAME (RFC 3501 6.3.5): the mailbox and every mailbox below it; missing parents are created.

        Renaming INBOX moves its messages into a new mailbox and leaves INBOX empty
        (its children stay where they are). Renamed mailboxes get a new UIDVALIDITY:
        to a client the new name is a mailbox it has never seen.
        """
        old_path, new_path = old_path.strip("/"), new_path.strip("/")
        if old_path != "INBOX":
            self._free_names_after_clock(owner_id, old_path)
        if not new_path or new_path.upper() == "INBOX":
            raise ValueError("a mailbox cannot be renamed to INBOX")
        if new_path == old_path or (old_path != "INBOX" and new_path.startswith(old_path + "/")):
            raise ValueError("cannot rename a mailbox into itself")
        with self.write() as s:
            source = s.scalar(select(Collection).where(
                Collection.owner_id == owner_id, Collection.kind == "mailbox", Collection.path == old_path))
            if source is None:
                raise NotFound(f"no mailbox {old_path!r}")
            source = self._locked_collection(s, source.id)
            self.access.authorize(s, actor, "write", source)
            if s.scalar(select(Collection.id).where(
                    Collection.owner_id == owner_id, Collection.kind == "mailbox", Collection.path == new_path)):
                raise AlreadyExists(f"mailbox {new_path!r} exists")
            parent = self._ensure_parents(s, owner_id, new_path, actor)
            validity = self._next_uidvalidity(s)
            if old_path == "INBOX":
                return self._rename_inbox(s, source, new_path, parent, validity)
            prefix = old_path + "/"
            children = list(s.scalars(select(Collection).where(
                Collection.owner_id == owner_id, Collection.kind == "mailbox",
                Collection.path.startswith(prefix, autoescape=True)).order_by(Collection.path)))
            clashes = [new_path + c.path[len(old_path):] for c in children]
            if clashes and s.scalar(select(Collection.id).where(
                    Collection.owner_id == owner_id, Collection.kind == "mailbox", Collection.path.in_(clashes))):
                raise AlreadyExists("a mailbox below the new name exists")
            old_parent = s.get(Collection, source.parent_id) if source.parent_id else None
            for coll in [source, *children]:
                coll.path = new_path + coll.path[len(old_path):]
                coll.uidvalidity = validity
                coll.updated_at = utcnow()
            source.parent_id = parent.id if parent is not None else None
            source.display_name = new_path.rsplit("/", 1)[-1]
            s.flush()
            if old_parent is not None:
                self._record_change(s, old_parent, old_path.rsplit("/", 1)[-1] + "/", None, "deleted")
            if parent is not None:
                self._record_change(s, parent, new_path.rsplit("/", 1)[-1] + "/", None, "created")
            self._record_change(s, source, "", None, "modified")
            return source

    def _rename_inbox(self, s: Session, inbox: Collection, new_path: str, parent: Collection | None,
                      validity: int) -> Collection:
        target = Collection(owner_id=inbox.owner_id, kind="mailbox", path=new_path,
                            parent_id=parent.id if parent else None, display_name=new_path.rsplit("/", 1)[-1],
                            uidvalidity=validity, uidnext=inbox.uidnext)
        s.add(target)
        s.flush()
        # The messages keep their UIDs in the new mailbox; INBOX's uidnext stays, so none is reused there.
        items = list(s.scalars(select(Item).where(Item.collection_id == inbox.id).order_by(Item.uid)))
        for item in items:
            self._record_change(s, inbox, item.name, item.uid, "deleted")
            item.collection_id = target.id
            item.modseq = self._record_change(s, target, item.name, item.uid, "created")
            s.execute(update(MessageFlags).where(MessageFlags.item_id == item.id)
                      .values(collection_id=target.id, modseq=item.modseq))
        # Other users' own flags on these messages follow them into the new mailbox.
        s.execute(update(MailUserFlags).where(MailUserFlags.collection_id == inbox.id)
                  .values(collection_id=target.id))
        if parent is not None:
            self._record_change(s, parent, new_path.rsplit("/", 1)[-1] + "/", None, "created")
        s.flush()
        return target

    def _ensure_parents(self, s: Session, owner_id: int, path: str, actor: int | None) -> Collection | None:
        if "/" not in path:
            self.access.authorize_owner(s, actor, owner_id)
            return None
        parent: Collection | None = None
        parts = path.split("/")
        for depth in range(1, len(parts)):
            sub = "/".join(parts[:depth])
            found = s.scalar(select(Collection).where(
                Collection.owner_id == owner_id, Collection.kind == "mailbox", Collection.path == sub))
            if found is None:
                if parent is None:
                    self.access.authorize_owner(s, actor, owner_id)
                else:
                    self.access.authorize(s, actor, "write", parent)
                found = Collection(owner_id=owner_id, kind="mailbox", path=sub,
                                   parent_id=parent.id if parent else None, display_name=parts[depth - 1],
                                   uidvalidity=self._next_uidvalidity(s))  # a new name
                s.add(found)
                s.flush()
            parent = found
        assert parent is not None
        self.access.authorize(s, actor, "write", parent)
        return parent

    def _next_uidvalidity(self, s: Session) -> int:
        """The clock in seconds, like every new collection (RFC 3501 2.3.1.1); see :meth:`delete_mailbox`."""
        return int(time.time())

    def _free_names_after_clock(self, owner_id: int, path: str) -> None:
        """Wait (in this worker thread) until the clock is past the UIDVALIDITY of ``path`` and its children.

        A mailbox name freed by DELETE or RENAME may be created again at once, and a
        new mailbox gets the clock as UIDVALIDITY: freeing a name only once the clock
        has passed its UIDVALIDITY makes the next mailbox of that name get a higher
        one, so a client never takes old UIDs for new messages — across server
        processes too, since the wait comes before the name is freed. (At most a
        second; a clock far behind, e.g. after a step back, is not waited for.)
        """
        with self.read() as s:
            highest = s.scalar(select(func.max(Collection.uidvalidity)).where(
                Collection.owner_id == owner_id, Collection.kind == "mailbox",
                (Collection.path == path) | Collection.path.startswith(path + "/", autoescape=True)))
        if highest is None:
            return
        deadline = time.monotonic() + 3
        while int(time.time()) <= int(highest) and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.001, int(highest) + 1 - time.time())))

    def delete_mailbox(self, owner_id: int, path: str, actor: int | None = None) -> None:
        """DELETE (RFC 3501 6.3.4) with everything below it; the name is freed only after the clock passed
        its UIDVALIDITY (see :meth:`_free_names_after_clock`)."""
        with self.read() as s:
            coll = s.scalar(select(Collection).where(
                Collection.owner_id == owner_id, Collection.kind == "mailbox", Collection.path == path))
            if coll is None:
                raise NotFound(f"no mailbox {path!r}")
            self.access.authorize(s, actor, "read", coll)
        self._free_names_after_clock(owner_id, path)
        self.delete_collection(coll.id, actor=actor)

    # ------------------------------------------------------------------ change log in bulk
    def _record_changes(self, s: Session, coll: Collection, entries: list[tuple[str, int]], kind: str) -> list[int]:
        """:meth:`_record_change` for many messages of one mailbox in one statement; returns their new modseqs.

        One after-commit event (and one PostgreSQL NOTIFY) stands for all of them: a
        listener (IMAP IDLE, QRESYNC) learns that the mailbox changed and reads the
        change log, so a STORE on 50,000 messages does not wake it 50,000 times.
        """
        if not entries:
            return []
        first = int(coll.modseq) + 1
        coll.modseq = first + len(entries) - 1
        coll.updated_at = now = utcnow()
        s.connection().execute(insert(Change.__table__), [
            {"collection_id": coll.id, "modseq": first + n, "item_name": name, "item_uid": uid, "kind": kind, "at": now}
            for n, (name, uid) in enumerate(entries)])
        event = ChangeEvent(collection_id=coll.id, owner_id=coll.owner_id, kind=kind, modseq=int(coll.modseq),
                            item_name=entries[-1][0], item_uid=entries[-1][1])
        s.info["events"].append(event)
        if not self._is_sqlite:
            s.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": event.to_payload()})
        return list(range(first, first + len(entries)))

    def _record_changes_from(self, s: Session, coll: Collection, changed: Any, modseq: int, kind: str,
                             last: tuple[str, int]) -> None:
        """:meth:`_record_changes` for the (name, uid) rows ``changed`` selects, all at ``modseq``, in one
        INSERT … SELECT: no Python row per message. ``last`` names the event's message."""
        coll.modseq = modseq
        coll.updated_at = now = utcnow()
        subquery = changed.subquery()
        s.execute(insert(Change).from_select(
            ["collection_id", "modseq", "item_name", "item_uid", "kind", "at"],
            select(literal(coll.id), literal(modseq), subquery.c.name, subquery.c.uid, literal(kind),
                   literal(now, Change.at.type))))
        event = ChangeEvent(collection_id=coll.id, owner_id=coll.owner_id, kind=kind, modseq=modseq,
                            item_name=last[0], item_uid=last[1])
        s.info["events"].append(event)
        if not self._is_sqlite:
            s.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": event.to_payload()})

    # ------------------------------------------------------------------ flags with CONDSTORE
    def store_flags(self, mailbox_id: int, uids: Iterable[int], flags: Iterable[str], mode: str,
                    actor: int | None = None, unchanged_since: int | None = None) -> FlagUpdate:
        """Replace ("set"), add or remove flags; skips messages changed after ``unchanged_since`` (CONDSTORE).

        RFC 7162 3.1.3: a message whose modseq is above ``unchanged_since`` is left
        alone and listed in ``modified``. Every message the command changes gets the
        same new modseq, above every modseq the mailbox had (RFC 7162 3.1: each STORE
        command gets its own mod-sequence; it need not differ between the messages of
        one command), and one change-log row each.
        In a mailbox the actor does not own, system flags are the actor's own
        (:mod:`kantoor.storage.mail_flags`): storing only \\Seen then needs just the
        ``read`` right (RFC 4314's "s"), anything else ``write``; the new modseq is
        the actor's, and other users' view of the message does not change.
        Set-based: the new flags are computed once per distinct flag string (a
        mailbox has few), and the rows are written with one UPDATE per distinct
        (old, new) pair and chunk of ids — not one statement or ORM object per message.
        """
        flag_list = normalize_flags(flags)
        lowered = {f.lower() for f in flag_list}
        if mode not in ("set", "add", "remove"):
            raise ValueError(f"unknown flag mode {mode!r}")
        result = FlagUpdate()
        with self.write() as s:
            coll = self._locked_collection(s, mailbox_id)
            private = is_private_view(coll, actor)
            only_seen = private and lowered <= {"\\seen"} and mode != "set"
            self.access.authorize(s, actor, "read" if only_seen else "write", coll)
            wanted = sorted(set(int(u) for u in uids))
            if not wanted:
                return result
            # The narrow flag rows alone (migration 0006): the wide item rows are neither read nor rewritten.
            columns = [MessageFlags.item_id.label("id"), MessageFlags.uid, MessageFlags.flags, MessageFlags.modseq]
            query = select(*columns).where(MessageFlags.collection_id == coll.id)
            if private:
                query = query.add_columns(MailUserFlags.flags, MailUserFlags.modseq).outerjoin(
                    MailUserFlags, user_flags_join(actor))
            range_read = len(wanted) > RANGE_READ_ABOVE
            if range_read:  # a range read beats a long IN list; extra rows are skipped below
                query = query.where(MessageFlags.uid.between(wanted[0], wanted[-1]))
            else:
                query = query.where(MessageFlags.uid.in_(wanted))
            chosen = set(wanted)
            # (row flags, own flags) -> (current view, new view or None when unchanged)
            computed: dict[tuple[str, str | None], tuple[list[str], list[str] | None]] = {}

            def transform(item_flags: str, own_flags: str | None) -> tuple[list[str], list[str] | None]:
                current = view_flags(item_flags, own_flags, private)
                if mode == "set":
                    new = flag_list
                elif mode == "add":
                    new = normalize_flags(current + flag_list)
                else:
                    new = [f for f in current if f.lower() not in lowered]
                if new == current:
                    return current, None
                check_flags_size(new)
                return current, new

            changes: list[tuple[Any, list[str], list[str]]] = []  # (row, current view, new view)
            conn = s.connection()
            # Whether the command covers every message from its lowest to its highest UID (STORE 1:*): then
            # the writes below name the UID range and the old flags, not lists of ids. Only a range read
            # can tell (an IN list does not return the messages between the ones it names).
            whole_range = range_read
            # Per row only look-ups (a STORE 1:* runs this for every message): rows as plain tuples
            # (id, uid, flags, modseq[, own flags, own modseq]), the flag arithmetic once per distinct flags.
            for row in conn.execute(query.order_by(MessageFlags.uid)).all():
                uid = row[1]
                if uid not in chosen:
                    whole_range = False
                    continue
                own_flags = row[4] if private else None
                modseq = view_modseq(row[3], row[5]) if private else row[3]
                if unchanged_since is not None and modseq > unchanged_since:
                    result.modified.append(uid)
                    whole_range = False
                    continue
                key = (row[2] or "", own_flags)
                done = computed.get(key)
                if done is None:
                    done = computed[key] = transform(*key)
                current, new = done
                if new is None:
                    result.unchanged[uid] = (current, modseq)
                else:
                    changes.append((row, current, new))
            if not changes:
                return result
            modseq = int(coll.modseq) + 1  # one for the whole command (see above)
            item_updates: dict[str, list[int]] = {}  # new row flags -> ids
            by_old_flags: dict[str, str] = {}  # old row flags -> new ones (a mailbox has few distinct)
            own_rows: list[dict[str, Any]] = []
            keywords_of: dict[int, list[str]] = {}  # id(list) -> keywords, computed once per distinct view
            outcome: dict[int, tuple[str, tuple[list[str], int]]] = {}  # id(new view) -> (its text, result)
            for row, current, new in changes:
                text_and_result = outcome.get(id(new))
                if text_and_result is None:
                    text_and_result = outcome[id(new)] = (" ".join(new), (new, modseq))
                result.updated[row[1]] = text_and_result[1]
                if not private:
                    if whole_range:
                        by_old_flags[row[2]] = text_and_result[0]
                    else:
                        item_updates.setdefault(text_and_result[0], []).append(row[0])
                    continue
                system, keywords = split_flags(new)
                old_keywords = keywords_of.get(id(current))
                if old_keywords is None:
                    old_keywords = keywords_of[id(current)] = split_flags(current)[1]
                if keywords != old_keywords:  # keywords are shared: everyone sees them change
                    owners_system = split_flags(row.flags.split())[0]
                    item_updates.setdefault(" ".join(owners_system + keywords), []).append(row.id)
                own_rows.append({"item_id": row.id, "principal_id": actor, "collection_id": coll.id,
                                 "flags": " ".join(system), "modseq": modseq})
            flag_table = MessageFlags.__table__
            for old, value in by_old_flags.items():
                # Every message in the range with these flags changes the same way (the mailbox is locked).
                conn.execute(update(flag_table).where(
                    flag_table.c.collection_id == coll.id, flag_table.c.uid.between(wanted[0], wanted[-1]),
                    flag_table.c.flags == old).values(flags=value, modseq=modseq))
            for value, ids in item_updates.items():
                for chunk in _chunks(ids):
                    conn.execute(update(flag_table).where(flag_table.c.item_id.in_(chunk))
                                 .values(flags=value, modseq=modseq))
            if own_rows:
                table = MailUserFlags.__table__
                for chunk in _chunks([r["item_id"] for r in own_rows]):
                    conn.execute(delete(table).where(table.c.principal_id == actor, table.c.item_id.in_(chunk)))
                conn.execute(insert(table), own_rows)
            # The change log gets one row per changed message, copied in SQL from the rows just written:
            # ``modseq`` is new in this (locked) mailbox, so exactly they carry it.
            if private:
                changed = (select(Item.name, Item.uid).join(MailUserFlags, MailUserFlags.item_id == Item.id)
                           .where(MailUserFlags.collection_id == coll.id, MailUserFlags.principal_id == actor,
                                  MailUserFlags.modseq == modseq))
            else:
                changed = (select(Item.name, Item.uid).join(MessageFlags, MessageFlags.item_id == Item.id)
                           .where(MessageFlags.collection_id == coll.id, MessageFlags.modseq == modseq))
            last = changes[-1][0]
            last_name = s.scalar(select(Item.name).where(Item.id == last.id)) or str(last.uid)
            self._record_changes_from(s, coll, changed, modseq, "modified", (last_name, int(last.uid)))
            return result

    # ------------------------------------------------------------------ ACL (RFC 4314) read-out
    def mailbox_grants(self, mailbox_id: int, actor: int | None = None) -> list[tuple[str, str]]:
        """(identifier, right) for the owner ("admin") and each grant on the mailbox (GETACL); needs ``admin``.

        Accounts are named by login, groups by ``$`` and their name.
        """
        from kantoor.storage.models import Account, Group

        def identifier(s: Session, principal_id: int) -> str | None:
            login = s.scalar(select(Account.login).where(Account.principal_id == principal_id))
            if login is not None:
                return login
            name = s.scalar(select(Group.name).where(Group.principal_id == principal_id))
            return f"${name}" if name is not None else None

        with self.read() as s:
            coll = s.get(Collection, mailbox_id)
            if coll is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            self.access.authorize(s, actor, "admin", coll)
            entries = [(identifier(s, coll.owner_id) or "", "admin")]
            for grant in s.scalars(select(Grant).where(Grant.collection_id == coll.id).order_by(Grant.id)):
                name = identifier(s, grant.grantee_id)
                if name is not None:
                    entries.append((name, grant.right))
            return entries

    # ------------------------------------------------------------------ QRESYNC (RFC 7162 3.2)
    def vanished_since(self, mailbox_id: int, modseq: int, actor: int | None = None) -> list[int]:
        """UIDs expunged or moved away after ``modseq``, from the change log (VANISHED (EARLIER))."""
        from kantoor.storage.models import Change

        with self.read() as s:
            coll = s.get(Collection, mailbox_id)
            if coll is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            self.access.authorize(s, actor, "read", coll)
            gone = set(int(u) for u in s.scalars(select(Change.item_uid).where(
                Change.collection_id == coll.id, Change.modseq > modseq, Change.kind == "deleted",
                Change.item_uid.is_not(None))))
            # A UID is never reused in a mailbox, so only the gone ones need checking (not the whole mailbox).
            present = set(int(u or 0) for u in s.scalars(select(Item.uid).where(
                Item.collection_id == coll.id, Item.uid.in_(sorted(gone))))) if gone else set()
            return sorted(gone - present)
