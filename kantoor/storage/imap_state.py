"""Mailbox operations only IMAP needs: bulk expunge, atomic copy/move, rename, conditional flag stores.

Each one is ONE write transaction on the shared write path (rights through the
access policy, quota through the quota policy, every touched message in the
change log), so a failure — a missing right, a full quota — leaves nothing done.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from kantoor.storage.errors import AlreadyExists, NotFound
from kantoor.storage.models import Blob, Collection, Grant, Item, utcnow
from kantoor.storage.names import normalize_flags
from kantoor.storage.transactions import StoreBase


@dataclass
class FlagUpdate:
    """What a conditional flag store did: new (flags, modseq) by UID, and UIDs it refused (RFC 7162 3.1.3)."""

    updated: dict[int, tuple[list[str], int]] = field(default_factory=dict)
    unchanged: dict[int, tuple[list[str], int]] = field(default_factory=dict)  # matched, flags already so
    modified: list[int] = field(default_factory=list)


def _message_copy(item: Item, collection_id: int, uid: int) -> Item:
    """A new row for ``item`` in another mailbox: same body reference, index columns, flags and date."""
    return Item(
        collection_id=collection_id, name=str(uid), uid=uid, blob_sha256=item.blob_sha256,
        inline_body=item.inline_body, size=item.size, etag=item.etag, content_type=item.content_type,
        created_at=utcnow(), updated_at=utcnow(), internaldate=item.internaldate, flags=item.flags,
        subject=item.subject, from_addr=item.from_addr, to_addr=item.to_addr, message_id=item.message_id,
    )


class ImapStateMixin(StoreBase):
    # ------------------------------------------------------------------ expunge
    def expunge_messages(self, mailbox_id: int, uids: Iterable[int] | None = None,
                         actor: int | None = None) -> list[int]:
        """Remove the messages flagged \\Deleted (only those among ``uids`` when given); returns their UIDs."""
        with self.write() as s:
            coll = self._locked_collection(s, mailbox_id)
            self.access.authorize(s, actor, "write", coll)
            query = select(Item).where(Item.collection_id == coll.id)
            if uids is not None:
                query = query.where(Item.uid.in_(list(uids)))
            doomed = [i for i in s.scalars(query.order_by(Item.uid))
                      if "\\deleted" in i.flags.lower().split()]
            if not doomed:
                return []
            ids = [i.id for i in doomed]
            self._release_blobs(s, select(Item.blob_sha256).where(Item.id.in_(ids), Item.blob_sha256.is_not(None)))
            freed = sum(int(i.size) for i in doomed)
            s.execute(delete(Grant).where(Grant.item_id.in_(ids)))
            s.execute(delete(Item).where(Item.id.in_(ids)))
            self.quota.reserve(s, coll.owner_id, "mail", -freed)
            for item in doomed:
                self._record_change(s, coll, item.name, item.uid, "deleted")
            return [int(i.uid or 0) for i in doomed]

    # ------------------------------------------------------------------ copy and move
    def copy_messages(self, source_id: int, uids: Iterable[int], target_id: int, actor: int | None = None,
                      move: bool = False) -> list[tuple[int, int]]:
        """COPY (RFC 3501 6.4.7) or MOVE (RFC 6851) messages; returns (source UID, new UID) pairs in UID order.

        All or nothing: the target's owner is charged for every copy (a move between
        two mailboxes of one owner costs nothing; across owners it is charged to the
        target's owner and given back to the source's), and [OVERQUOTA] stores nothing.
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
            items = list(s.scalars(select(Item).where(Item.collection_id == source.id, Item.uid.in_(wanted))
                                   .order_by(Item.uid))) if wanted else []
            if not items:
                return []
            total = sum(int(i.size) for i in items)
            if not move or source.owner_id != target.owner_id:
                self.quota.reserve(s, target.owner_id, "mail", total)
            if move and source.owner_id != target.owner_id:
                self.quota.reserve(s, source.owner_id, "mail", -total)
            pairs: list[tuple[int, int]] = []
            for item in items:
                old_uid, old_name = int(item.uid or 0), item.name
                new_uid = target.uidnext
                target.uidnext = new_uid + 1
                if move:
                    # The row itself moves: its body reference and index columns go along.
                    s.execute(delete(Grant).where(Grant.item_id == item.id))
                    item.collection_id, item.uid, item.name = target.id, new_uid, str(new_uid)
                    item.updated_at = utcnow()
                    self._record_change(s, source, old_name, old_uid, "deleted")
                    item.modseq = self._record_change(s, target, item.name, new_uid, "created")
                else:
                    copy_ = _message_copy(item, target.id, new_uid)
                    if item.blob_sha256:
                        s.execute(update(Blob).where(Blob.sha256 == item.blob_sha256)
                                  .values(refcount=Blob.refcount + 1, updated_at=utcnow()))
                    s.add(copy_)
                    copy_.modseq = self._record_change(s, target, copy_.name, new_uid, "created")
                pairs.append((old_uid, new_uid))
                s.flush()  # one UID at a time: a name clash shows here, inside the transaction
            self._fault("before_commit")
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

    # ------------------------------------------------------------------ flags with CONDSTORE
    def store_flags(self, mailbox_id: int, uids: Iterable[int], flags: Iterable[str], mode: str,
                    actor: int | None = None, unchanged_since: int | None = None) -> FlagUpdate:
        """Replace ("set"), add or remove flags; skips messages changed after ``unchanged_since`` (CONDSTORE).

        RFC 7162 3.1.3: a message whose modseq is above ``unchanged_since`` is left
        alone and listed in ``modified``; every changed message gets a new modseq.
        """
        flag_list = normalize_flags(flags)
        lowered = {f.lower() for f in flag_list}
        result = FlagUpdate()
        with self.write() as s:
            coll = self._locked_collection(s, mailbox_id)
            self.access.authorize(s, actor, "write", coll)
            wanted = sorted(set(int(u) for u in uids))
            if not wanted:
                return result
            for item in s.scalars(select(Item).where(Item.collection_id == coll.id, Item.uid.in_(wanted))
                                  .order_by(Item.uid)):
                uid = int(item.uid or 0)
                if unchanged_since is not None and item.modseq > unchanged_since:
                    result.modified.append(uid)
                    continue
                current = item.flags.split() if item.flags else []
                if mode == "set":
                    new = flag_list
                elif mode == "add":
                    new = normalize_flags(current + flag_list)
                elif mode == "remove":
                    new = [f for f in current if f.lower() not in lowered]
                else:
                    raise ValueError(f"unknown flag mode {mode!r}")
                if new != current:
                    item.flags = " ".join(new)
                    item.modseq = self._record_change(s, coll, item.name, uid, "modified")
                    result.updated[uid] = (new, int(item.modseq))
                else:
                    result.unchanged[uid] = (new, int(item.modseq))
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
            present = set(int(u or 0) for u in s.scalars(select(Item.uid).where(Item.collection_id == coll.id)))
            return sorted(gone - present)
