"""The one Store API: every frontend reads and writes through it.

Every write is one database transaction that (1) asks the access policy for the
right, (2) reserves quota through the quota policy, (3) writes blob + rows,
(4) appends to the change log and bumps the collection's modseq, and (5) after
commit publishes the change to listeners. A failure anywhere rolls the whole
transaction back: no row, no counted usage; a blob file written before the
failure has no reference and is collected by :meth:`Store.collect_garbage`.

The policies are plugged in by the application (``kantoor.core``) because the
ACL engine (``auth``) and the quota engine (``quota``) sit above storage.
All methods block: call them from worker threads, never on the event loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from kantoor.storage.blobs import BlobStore, StoredBlob
from kantoor.storage.database import WRITE_OPTION, is_sqlite
from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from kantoor.storage.indexing import ItemIndex, index_for
from kantoor.storage.models import (
    Account,
    Alias,
    Blob,
    Change,
    Collection,
    Domain,
    Grant,
    Group,
    Item,
    Membership,
    Principal,
    Usage,
    utcnow,
)
from kantoor.storage.notify import CHANNEL, ChangeEvent, Notifier

# Which capacity a collection's bytes count against.
TOOL_OF_KIND = {"mailbox": "mail", "folder": "documents", "calendar": "calendar", "addressbook": "calendar"}

# Mailboxes every account gets, with their RFC 6154 special-use attribute.
DEFAULT_MAILBOXES = (
    ("INBOX", ""),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
DROP_FOLDER = "Drop folder"


class AccessPolicy(Protocol):
    """Decides rights; implemented by ``kantoor.auth.acl``. ``actor`` None is the system."""

    def authorize(
        self, session: Session, actor: int | None, right: str, collection: Collection, item: Item | None = None
    ) -> None: ...

    def authorize_owner(self, session: Session, actor: int | None, owner_id: int) -> None: ...


class QuotaPolicy(Protocol):
    """Capacities; implemented by ``kantoor.quota``. Raises QuotaExceeded."""

    def reserve(self, session: Session, owner_id: int, tool: str, delta: int) -> None: ...

    def check_new_group(self, session: Session, admin: Account) -> None: ...

    def check_new_member(self, session: Session, group: Group) -> None: ...


class _SystemOnly:
    """Default policy when none is plugged in: only the system may act (private by default)."""

    def authorize(self, session, actor, right, collection, item=None):  # type: ignore[no-untyped-def]
        if actor is not None:
            raise PermissionDenied("no access policy configured", right)

    def authorize_owner(self, session, actor, owner_id):  # type: ignore[no-untyped-def]
        if actor is not None:
            raise PermissionDenied("no access policy configured", "admin")


class _Unlimited:
    def reserve(self, session, owner_id, tool, delta):  # type: ignore[no-untyped-def]
        session.execute(
            update(Usage).where(Usage.owner_id == owner_id, Usage.tool == tool).values(bytes=Usage.bytes + delta)
        )

    def check_new_group(self, session, admin):  # type: ignore[no-untyped-def]
        return None

    def check_new_member(self, session, group):  # type: ignore[no-untyped-def]
        return None


@dataclass(frozen=True)
class Body:
    """Where an item's bytes live: inline in the row or in a blob file."""

    inline: bytes | None
    blob_sha256: str | None
    size: int


class Store:
    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        notifier: Notifier | None = None,
        access: AccessPolicy | None = None,
        quota: QuotaPolicy | None = None,
        inline_limit: int = 16 * 1024,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.notifier = notifier or Notifier()
        self.access: AccessPolicy = access or _SystemOnly()
        self.quota: QuotaPolicy = quota or _Unlimited()
        self.inline_limit = inline_limit
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._is_sqlite = is_sqlite(engine)
        # Test seam: called with a stage name during writes ("after_blob_write");
        # raising from it simulates a crash half-way through a write.
        self.fault_hook: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def read(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
        finally:
            # close() (not rollback()) ends the transaction without expiring the
            # objects, so callers can read them after the session is gone.
            session.close()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction; change events are published after commit."""
        session = self._sessions()
        session.connection(execution_options={WRITE_OPTION: True})
        events: list[ChangeEvent] = []
        session.info["events"] = events
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for event in events:
            self.notifier.publish(event)

    def _fault(self, stage: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage)

    # ------------------------------------------------------------------ domains
    def add_domain(self, name: str, owner_login: str | None = None) -> Domain:
        name = name.strip().lower().rstrip(".")
        if not name or " " in name or "@" in name or "/" in name or len(name) > 253:
            raise ValueError(f"not a domain name: {name!r}")
        with self.write() as s:
            if s.scalar(select(Domain).where(Domain.name == name)):
                raise AlreadyExists(f"domain {name} exists")
            owner = self._account(s, owner_login) if owner_login else None
            domain = Domain(name=name, owner_id=owner.id if owner else None)
            s.add(domain)
            s.flush()
            return domain

    def list_domains(self) -> list[Domain]:
        with self.read() as s:
            return list(s.scalars(select(Domain).order_by(Domain.name)))

    def is_local_domain(self, name: str) -> bool:
        with self.read() as s:
            return s.scalar(select(Domain.id).where(Domain.name == name.lower().rstrip("."))) is not None

    # ------------------------------------------------------------------ accounts
    def create_account(
        self,
        login: str,
        password_hash: str,
        plan: str,
        role: str = "user",
        state: str = "active",
        first_name: str = "",
        last_name: str = "",
        organisation: str = "",
        must_change_password: bool = False,
    ) -> Account:
        """Create an account with its default mailboxes, calendars, address book and drive."""
        login = normalize_address(login)
        with self.write() as s:
            if self._find_account(s, login) is not None:
                raise AlreadyExists(f"account {login} exists")
            principal = Principal(kind="account")
            s.add(principal)
            s.flush()
            account = Account(
                principal_id=principal.id, login=login, password_hash=password_hash, plan=plan,
                role=role, state=state, first_name=first_name, last_name=last_name,
                organisation=organisation, must_change_password=must_change_password,
            )
            s.add(account)
            s.flush()
            self._create_owner_space(s, principal.id, personal=True)
            return account

    def _create_owner_space(self, s: Session, owner_id: int, personal: bool) -> None:
        for tool in ("mail", "documents", "calendar"):
            s.add(Usage(owner_id=owner_id, tool=tool, bytes=0))
        # UIDVALIDITY: seconds since the epoch, so a re-created mailbox gets a new one.
        validity = int(time.time())
        mailboxes = DEFAULT_MAILBOXES if personal else (("INBOX", ""),)
        for name, special in mailboxes:
            s.add(Collection(owner_id=owner_id, kind="mailbox", path=name, special_use=special,
                             display_name=name, uidvalidity=validity))
        s.add(Collection(owner_id=owner_id, kind="calendar", path="calendar", display_name="Calendar",
                         components="VEVENT"))
        if personal:
            s.add(Collection(owner_id=owner_id, kind="calendar", path="tasks", display_name="Tasks",
                             components="VTODO"))
        s.add(Collection(owner_id=owner_id, kind="addressbook", path="contacts", display_name="Contacts"))
        root = Collection(owner_id=owner_id, kind="folder", path="", display_name="")
        s.add(root)
        s.flush()
        if personal:
            s.add(Collection(owner_id=owner_id, kind="folder", path=DROP_FOLDER, parent_id=root.id,
                             display_name=DROP_FOLDER, special_use="drop"))

    @staticmethod
    def _find_account(s: Session, address: str) -> Account | None:
        address = normalize_address(address)
        account = s.scalar(select(Account).where(Account.login == address))
        if account is None:
            alias = s.get(Alias, address)
            account = alias.account if alias else None
        return account

    def _account(self, s: Session, login: str) -> Account:
        account = self._find_account(s, login)
        if account is None:
            raise NotFound(f"no account {login}")
        return account

    def get_account(self, login: str) -> Account | None:
        """The account whose login or alias is ``login`` (case-insensitive)."""
        with self.read() as s:
            return self._find_account(s, login)

    def get_account_by_principal(self, principal_id: int) -> Account | None:
        with self.read() as s:
            return s.scalar(select(Account).where(Account.principal_id == principal_id))

    def resolve_recipient(self, address: str) -> Account | None:
        """The active account that mail for ``address`` goes to (``user+tag@`` → ``user@``)."""
        address = normalize_address(address)
        with self.read() as s:
            account = self._find_account(s, address)
            if account is None and "+" in address.split("@", 1)[0]:
                local, _, domain = address.partition("@")
                account = self._find_account(s, f"{local.split('+', 1)[0]}@{domain}")
            return account if account is not None and account.state == "active" else None

    def list_accounts(self) -> list[Account]:
        with self.read() as s:
            return list(s.scalars(select(Account).order_by(Account.login)))

    def count_accounts(self) -> int:
        with self.read() as s:
            return int(s.scalar(select(func.count(Account.id))) or 0)

    _UPDATABLE = frozenset({
        "password_hash", "state", "plan", "role", "first_name", "last_name", "organisation",
        "last_login_at", "must_change_password", "session_timeout_minutes", "photo",
    })

    def update_account(self, login: str, **fields: object) -> Account:
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        with self.write() as s:
            account = self._account(s, login)
            for key, value in fields.items():
                setattr(account, key, value)
            s.flush()
            return account

    def add_alias(self, login: str, address: str) -> None:
        address = normalize_address(address)
        with self.write() as s:
            account = self._account(s, login)
            if self._find_account(s, address) is not None:
                raise AlreadyExists(f"address {address} is taken")
            s.add(Alias(address=address, account_id=account.id))

    def delete_account(self, login: str) -> None:
        """Destroy an account and all of its data; refuses while it administers a group."""
        with self.write() as s:
            account = self._account(s, login)
            groups = list(s.scalars(select(Group.name).where(Group.admin_id == account.id)))
            if groups:
                raise PermissionDenied(
                    f"{account.login} administers {', '.join(groups)}: hand those groups over first", "admin"
                )
            self._delete_owner_space(s, account.principal_id)
            s.execute(delete(Membership).where(Membership.account_id == account.id))
            s.execute(update(Domain).where(Domain.owner_id == account.id).values(owner_id=None))
            s.delete(account)
            s.flush()
            s.execute(delete(Principal).where(Principal.id == account.principal_id))

    def _delete_owner_space(self, s: Session, owner_id: int) -> None:
        coll_ids = list(s.scalars(select(Collection.id).where(Collection.owner_id == owner_id)))
        if coll_ids:
            self._release_blobs(s, select(Item.blob_sha256).where(
                Item.collection_id.in_(coll_ids), Item.blob_sha256.is_not(None)))
            s.execute(delete(Grant).where(Grant.item_id.in_(select(Item.id).where(Item.collection_id.in_(coll_ids)))))
            s.execute(delete(Grant).where(Grant.collection_id.in_(coll_ids)))
            s.execute(delete(Change).where(Change.collection_id.in_(coll_ids)))
            s.execute(delete(Item).where(Item.collection_id.in_(coll_ids)))
            s.execute(update(Collection).where(Collection.id.in_(coll_ids)).values(parent_id=None))
            s.execute(delete(Collection).where(Collection.id.in_(coll_ids)))
        s.execute(delete(Grant).where(Grant.grantee_id == owner_id))
        s.execute(delete(Usage).where(Usage.owner_id == owner_id))

    def _release_blobs(self, s: Session, sha_query) -> None:  # type: ignore[no-untyped-def]
        counts: dict[str, int] = {}
        for sha in s.scalars(sha_query):
            counts[sha] = counts.get(sha, 0) + 1
        for sha, n in counts.items():
            s.execute(update(Blob).where(Blob.sha256 == sha).values(refcount=Blob.refcount - n, updated_at=utcnow()))

    # ------------------------------------------------------------------ groups
    def create_group(self, name: str, admin_login: str) -> Group:
        name = name.strip()
        if not name or "/" in name or len(name) > 200:
            raise ValueError(f"not a valid group name: {name!r}")
        with self.write() as s:
            admin = self._account(s, admin_login)
            if s.scalar(select(Group.id).where(Group.name == name)) is not None:
                raise AlreadyExists(f"group {name} exists")
            self.quota.check_new_group(s, admin)
            principal = Principal(kind="group")
            s.add(principal)
            s.flush()
            group = Group(name=name, admin_id=admin.id, principal_id=principal.id)
            s.add(group)
            s.flush()
            s.add(Membership(group_id=group.id, account_id=admin.id, can_write=True))
            self._create_owner_space(s, principal.id, personal=False)
            return group

    def _group(self, s: Session, name: str) -> Group:
        group = s.scalar(select(Group).where(Group.name == name))
        if group is None:
            raise NotFound(f"no group {name}")
        return group

    def get_group(self, name: str) -> Group | None:
        with self.read() as s:
            return s.scalar(select(Group).where(Group.name == name))

    def list_groups(self) -> list[tuple[Group, str, int]]:
        """Every group with its administrator's login and its member count."""
        with self.read() as s:
            rows = s.execute(
                select(Group, Account.login, func.count(Membership.account_id))
                .join(Account, Account.id == Group.admin_id)
                .join(Membership, Membership.group_id == Group.id, isouter=True)
                .group_by(Group.id, Account.login)
                .order_by(Group.name)
            )
            return [(g, login, int(n)) for g, login, n in rows]

    def add_member(self, group_name: str, login: str, can_write: bool = False) -> None:
        with self.write() as s:
            group = self._group(s, group_name)
            account = self._account(s, login)
            if s.get(Membership, (group.id, account.id)) is not None:
                raise AlreadyExists(f"{account.login} is already a member of {group.name}")
            self.quota.check_new_member(s, group)
            s.add(Membership(group_id=group.id, account_id=account.id, can_write=can_write))

    def remove_member(self, group_name: str, login: str) -> None:
        with self.write() as s:
            group = self._group(s, group_name)
            account = self._account(s, login)
            if group.admin_id == account.id:
                raise PermissionDenied(
                    "the administrator cannot leave the group; make someone else administrator first", "admin")
            membership = s.get(Membership, (group.id, account.id))
            if membership is None:
                raise NotFound(f"{account.login} is not a member of {group.name}")
            s.delete(membership)

    def group_members(self, group_name: str) -> list[tuple[Account, bool]]:
        with self.read() as s:
            group = self._group(s, group_name)
            rows = s.execute(select(Account, Membership.can_write).join(Membership, Membership.account_id == Account.id)
                             .where(Membership.group_id == group.id).order_by(Account.login))
            return [(a, bool(w)) for a, w in rows]

    # ------------------------------------------------------------------ collections
    def get_collection(self, collection_id: int) -> Collection:
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            return coll

    def find_collection(self, owner_id: int, kind: str, path: str, actor: int | None = None) -> Collection:
        """The collection at ``path``; raises NotFound, or PermissionDenied without ``read``."""
        with self.read() as s:
            coll = s.scalar(select(Collection).where(
                Collection.owner_id == owner_id, Collection.kind == kind, Collection.path == path))
            if coll is None:
                raise NotFound(f"no {kind} {path!r}")
            self.access.authorize(s, actor, "read", coll)
            return coll

    def list_collections(self, owner_id: int, kind: str, actor: int | None = None,
                         parent_id: int | None = None, right: str = "read") -> list[Collection]:
        """The owner's collections of ``kind`` that ``actor`` holds ``right`` on."""
        with self.read() as s:
            query = select(Collection).where(Collection.owner_id == owner_id, Collection.kind == kind)
            if parent_id is not None:
                query = query.where(Collection.parent_id == parent_id)
            result = []
            for coll in s.scalars(query.order_by(Collection.path)):
                try:
                    self.access.authorize(s, actor, right, coll)
                except PermissionDenied:
                    continue
                result.append(coll)
            return result

    def create_collection(self, owner_id: int, kind: str, path: str, actor: int | None = None,
                          display_name: str = "", components: str = "", description: str = "",
                          color: str = "", special_use: str = "") -> Collection:
        if kind not in TOOL_OF_KIND:
            raise ValueError(f"unknown collection kind {kind!r}")
        path = path.strip("/")
        with self.write() as s:
            parent = None
            if "/" in path or (kind == "folder" and path):
                parent_path = path.rsplit("/", 1)[0] if "/" in path else ""
                parent = s.scalar(select(Collection).where(
                    Collection.owner_id == owner_id, Collection.kind == kind, Collection.path == parent_path))
                if parent is None:
                    raise NotFound(f"no parent {parent_path!r}")
                self.access.authorize(s, actor, "write", parent)
            else:
                self.access.authorize_owner(s, actor, owner_id)
            if s.scalar(select(Collection.id).where(
                    Collection.owner_id == owner_id, Collection.kind == kind, Collection.path == path)):
                raise AlreadyExists(f"{kind} {path!r} exists")
            coll = Collection(owner_id=owner_id, kind=kind, path=path, parent_id=parent.id if parent else None,
                              display_name=display_name or path.rsplit("/", 1)[-1], components=components,
                              description=description, color=color, special_use=special_use,
                              uidvalidity=int(time.time()))
            s.add(coll)
            s.flush()
            if parent is not None:
                self._record_change(s, parent, coll.path.rsplit("/", 1)[-1] + "/", None, "created")
            return coll

    def delete_collection(self, collection_id: int, actor: int | None = None) -> None:
        """Delete a collection with everything below it, giving the usage back."""
        with self.write() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            if coll.parent_id is not None:
                parent = s.get(Collection, coll.parent_id)
                assert parent is not None
                self.access.authorize(s, actor, "write", parent)
            else:
                self.access.authorize_owner(s, actor, coll.owner_id)
            prefix = coll.path + "/"
            ids = [coll.id] + list(s.scalars(select(Collection.id).where(
                Collection.owner_id == coll.owner_id, Collection.kind == coll.kind,
                Collection.path.startswith(prefix, autoescape=True))))
            freed = int(s.scalar(select(func.coalesce(func.sum(Item.size), 0)).where(Item.collection_id.in_(ids))) or 0)
            self._release_blobs(s, select(Item.blob_sha256).where(
                Item.collection_id.in_(ids), Item.blob_sha256.is_not(None)))
            s.execute(delete(Grant).where(Grant.item_id.in_(select(Item.id).where(Item.collection_id.in_(ids)))))
            s.execute(delete(Grant).where(Grant.collection_id.in_(ids)))
            s.execute(delete(Change).where(Change.collection_id.in_(ids)))
            s.execute(delete(Item).where(Item.collection_id.in_(ids)))
            s.execute(update(Collection).where(Collection.id.in_(ids)).values(parent_id=None))
            s.execute(delete(Collection).where(Collection.id.in_(ids)))
            if freed:
                self.quota.reserve(s, coll.owner_id, TOOL_OF_KIND[coll.kind], -freed)
            if coll.parent_id is not None:
                parent = s.get(Collection, coll.parent_id)
                if parent is not None:
                    self._record_change(s, parent, coll.path.rsplit("/", 1)[-1] + "/", None, "deleted")

    # ------------------------------------------------------------------ items
    def _locked_collection(self, s: Session, collection_id: int) -> Collection:
        # FOR UPDATE serialises modseq/UID allocation on PostgreSQL; SQLite's
        # BEGIN IMMEDIATE already holds the database write lock.
        query = select(Collection).where(Collection.id == collection_id)
        if not self._is_sqlite:
            query = query.with_for_update()
        coll = s.scalar(query)
        if coll is None:
            raise NotFound(f"no collection {collection_id}")
        return coll

    def _record_change(self, s: Session, coll: Collection, name: str, uid: int | None, kind: str) -> int:
        coll.modseq += 1
        coll.updated_at = utcnow()
        s.add(Change(collection_id=coll.id, modseq=coll.modseq, item_name=name, item_uid=uid, kind=kind))
        event = ChangeEvent(collection_id=coll.id, owner_id=coll.owner_id, kind=kind, modseq=coll.modseq,
                            item_name=name, item_uid=uid)
        s.info["events"].append(event)
        if not self._is_sqlite:
            # Delivered by PostgreSQL to other processes only if this transaction commits.
            s.execute(text("SELECT pg_notify(:channel, :payload)"),
                      {"channel": CHANNEL, "payload": event.to_payload()})
        return coll.modseq

    def _store_body(self, body: bytes | BinaryIO | Iterable[bytes],
                    max_size: int | None) -> tuple[Body, str, bytes | None]:
        """Keep small bodies for inline storage, stream large ones to a blob file."""
        if isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
            if max_size is not None and len(data) > max_size:
                from kantoor.storage.blobs import BlobTooLarge
                raise BlobTooLarge(f"more than {max_size} bytes")
            if len(data) <= self.inline_limit:
                return Body(data, None, len(data)), hashlib.sha256(data).hexdigest(), data
        stored: StoredBlob = self.blobs.write(body, max_size=max_size)
        self._fault("after_blob_write")
        return Body(None, stored.sha256, stored.size), stored.sha256, None

    def put_item(
        self,
        collection_id: int,
        name: str,
        body: bytes | BinaryIO | Iterable[bytes],
        content_type: str,
        actor: int | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
        max_size: int | None = None,
        index: ItemIndex | None = None,
    ) -> tuple[Item, bool]:
        """Create or replace an item; returns (item, created).

        ``if_match`` is an ETag the current item must have; ``if_none_match`` means
        the item must not exist yet (HTTP ``If-None-Match: *``).
        """
        validate_item_name(name)
        stored, sha, data = self._store_body(body, max_size)
        if index is None:
            if data is None and stored.size <= 1024 * 1024 and content_type.startswith(("text/", "message/")):
                data = self.blobs.read(sha)
            index = index_for(content_type, data) if data is not None else ItemIndex()
        with self.write() as s:
            coll = self._locked_collection(s, collection_id)
            existing = s.scalar(select(Item).where(Item.collection_id == coll.id, Item.name == name))
            if existing is None:
                if if_match is not None:
                    raise PreconditionFailed(f"{name} does not exist")
                self.access.authorize(s, actor, "bind", coll)
            else:
                if if_none_match:
                    raise PreconditionFailed(f"{name} exists")
                if if_match is not None and if_match != existing.etag:
                    raise PreconditionFailed(f"{name} has changed")
                self.access.authorize(s, actor, "write", coll, existing)
            if index.ical_uid and coll.kind in ("calendar", "addressbook"):
                clash = s.scalar(select(Item.name).where(
                    Item.collection_id == coll.id, Item.ical_uid == index.ical_uid, Item.name != name))
                if clash is not None:
                    raise AlreadyExists(f"UID {index.ical_uid} is already used by {clash}")
            delta = stored.size - (existing.size if existing else 0)
            self.quota.reserve(s, coll.owner_id, TOOL_OF_KIND[coll.kind], delta)
            item = existing or Item(collection_id=coll.id, name=name, created_at=utcnow())
            if existing is not None and existing.blob_sha256:
                self._release_blobs(s, select(Item.blob_sha256).where(Item.id == existing.id))
            self._apply_body(s, item, stored, sha, content_type, index)
            if existing is None:
                s.add(item)
            self._fault("before_commit")
            item.modseq = self._record_change(s, coll, name, item.uid, "created" if existing is None else "modified")
            s.flush()
            return item, existing is None

    def _apply_body(self, s: Session, item: Item, stored: Body, sha: str, content_type: str, index: ItemIndex) -> None:
        if stored.blob_sha256:
            blob = s.get(Blob, stored.blob_sha256)
            if blob is None:
                s.add(Blob(sha256=stored.blob_sha256, size=stored.size, refcount=1, updated_at=utcnow()))
            else:
                blob.refcount += 1
                blob.updated_at = utcnow()
        item.blob_sha256 = stored.blob_sha256
        item.inline_body = stored.inline
        item.size = stored.size
        item.etag = f'"{sha[:40]}"'
        item.content_type = content_type
        item.updated_at = utcnow()
        item.component = index.component
        item.ical_uid = index.ical_uid
        item.dtstart = index.dtstart
        item.dtend = index.dtend
        item.recurring = index.recurring
        item.fn = index.fn
        item.emails = " ".join(index.emails)
        item.subject = index.subject
        item.from_addr = index.from_addr
        item.to_addr = index.to_addr
        item.message_id = index.message_id

    def get_item(self, collection_id: int, name: str, actor: int | None = None) -> Item:
        with self.read() as s:
            item = s.scalar(select(Item).where(Item.collection_id == collection_id, Item.name == name))
            coll = s.get(Collection, collection_id)
            if item is None or coll is None:
                raise NotFound(f"no item {name}")
            self.access.authorize(s, actor, "read", coll, item)
            return item

    def list_items(self, collection_id: int, actor: int | None = None) -> list[Item]:
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "read", coll)
            return list(s.scalars(select(Item).where(Item.collection_id == collection_id).order_by(Item.name)))

    def read_body(self, item: Item) -> bytes:
        """The bytes of an item the caller already got through an authorized read."""
        if item.inline_body is not None:
            return item.inline_body
        if item.blob_sha256 is None:
            return b""
        return self.blobs.read(item.blob_sha256)

    def open_body(self, item: Item) -> BinaryIO:
        import io

        if item.inline_body is not None or item.blob_sha256 is None:
            return io.BytesIO(item.inline_body or b"")
        return self.blobs.open(item.blob_sha256)

    def delete_item(self, collection_id: int, name: str, actor: int | None = None, if_match: str | None = None) -> None:
        with self.write() as s:
            coll = self._locked_collection(s, collection_id)
            item = s.scalar(select(Item).where(Item.collection_id == coll.id, Item.name == name))
            if item is None:
                raise NotFound(f"no item {name}")
            self.access.authorize(s, actor, "write", coll, item)
            if if_match is not None and if_match != item.etag:
                raise PreconditionFailed(f"{name} has changed")
            self._remove_item(s, coll, item)

    def _remove_item(self, s: Session, coll: Collection, item: Item) -> None:
        if item.blob_sha256:
            self._release_blobs(s, select(Item.blob_sha256).where(Item.id == item.id))
        self.quota.reserve(s, coll.owner_id, TOOL_OF_KIND[coll.kind], -item.size)
        s.execute(delete(Grant).where(Grant.item_id == item.id))
        s.delete(item)
        self._record_change(s, coll, item.name, item.uid, "deleted")

    def changes_since(self, collection_id: int, modseq: int, actor: int | None = None) -> list[Change]:
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "read", coll)
            return list(s.scalars(select(Change).where(
                Change.collection_id == collection_id, Change.modseq > modseq).order_by(Change.modseq)))

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
        stored, sha, data = self._store_body(raw, max_size)
        if data is None:
            with self.blobs.open(sha) as fh:
                data = fh.read(256 * 1024)  # headers are at the top
        index = index_for("message/rfc822", data)
        with self.write() as s:
            coll = self._locked_collection(s, mailbox_id)
            if coll.kind != "mailbox":
                raise NotFound("not a mailbox")
            self.access.authorize(s, actor, "bind", coll)
            self.quota.reserve(s, coll.owner_id, "mail", stored.size)
            uid = coll.uidnext
            coll.uidnext = uid + 1
            item = Item(collection_id=coll.id, name=str(uid), uid=uid, created_at=utcnow(),
                        internaldate=internaldate or utcnow(), flags=" ".join(normalize_flags(flags)))
            self._apply_body(s, item, stored, sha, "message/rfc822", index)
            s.add(item)
            self._fault("before_commit")
            item.modseq = self._record_change(s, coll, item.name, uid, "created")
            s.flush()
            return item

    def list_messages(self, mailbox_id: int, actor: int | None = None) -> list[Item]:
        """Every message in a mailbox, in UID order (body columns not loaded)."""
        with self.read() as s:
            coll = s.get(Collection, mailbox_id)
            if coll is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            self.access.authorize(s, actor, "read", coll)
            return list(s.scalars(select(Item).where(Item.collection_id == mailbox_id).order_by(Item.uid)))

    def set_flags(self, mailbox_id: int, uids: Iterable[int], flags: Iterable[str], mode: str,
                  actor: int | None = None) -> dict[int, list[str]]:
        """Replace (``mode`` "set"), add ("add") or remove ("remove") flags; returns new flags by UID."""
        flag_list = normalize_flags(flags)
        result: dict[int, list[str]] = {}
        with self.write() as s:
            coll = self._locked_collection(s, mailbox_id)
            self.access.authorize(s, actor, "write", coll)
            for item in s.scalars(select(Item).where(Item.collection_id == coll.id, Item.uid.in_(list(uids)))):
                current = item.flags.split() if item.flags else []
                if mode == "set":
                    new = flag_list
                elif mode == "add":
                    new = normalize_flags(current + flag_list)
                elif mode == "remove":
                    lowered = {f.lower() for f in flag_list}
                    new = [f for f in current if f.lower() not in lowered]
                else:
                    raise ValueError(f"unknown flag mode {mode!r}")
                if new != current:
                    item.flags = " ".join(new)
                    item.modseq = self._record_change(s, coll, item.name, item.uid, "modified")
                result[int(item.uid or 0)] = new
        return result

    # ------------------------------------------------------------------ grants
    def grant(self, collection_id: int | None, item_id: int | None, grantee_id: int, right: str,
              actor: int | None = None) -> None:
        if (collection_id is None) == (item_id is None):
            raise ValueError("grant either a collection or an item")
        if right not in ("freebusy", "read", "write", "bind", "admin"):
            raise ValueError(f"unknown right {right!r}")
        with self.write() as s:
            if item_id is not None:
                item = s.get(Item, item_id)
                if item is None:
                    raise NotFound(f"no item {item_id}")
                coll = s.get(Collection, item.collection_id)
            else:
                item = None
                coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "admin", coll, item)
            existing = s.scalar(select(Grant).where(
                _same(Grant.collection_id, collection_id), _same(Grant.item_id, item_id),
                Grant.grantee_id == grantee_id))
            if existing is not None:
                existing.right = right
            else:
                s.add(Grant(collection_id=collection_id, item_id=item_id, grantee_id=grantee_id, right=right))

    def revoke(self, collection_id: int | None, item_id: int | None, grantee_id: int, actor: int | None = None) -> None:
        with self.write() as s:
            coll = s.get(Collection, collection_id) if collection_id is not None else None
            item = s.get(Item, item_id) if item_id is not None else None
            if item is not None:
                coll = s.get(Collection, item.collection_id)
            if coll is None:
                raise NotFound("no such resource")
            self.access.authorize(s, actor, "admin", coll, item)
            s.execute(delete(Grant).where(
                Grant.grantee_id == grantee_id, _same(Grant.collection_id, collection_id),
                _same(Grant.item_id, item_id)))

    # ------------------------------------------------------------------ collection properties
    # (added for CalDAV/CardDAV PROPPATCH; usable by any frontend that renames or recolours)
    _COLLECTION_PROPERTIES = frozenset({"display_name", "description", "color", "components"})

    def update_collection(self, collection_id: int, actor: int | None = None, **fields: str) -> Collection:
        """Change a collection's display properties; needs ``write`` on it."""
        unknown = set(fields) - self._COLLECTION_PROPERTIES
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        with self.write() as s:
            coll = self._locked_collection(s, collection_id)
            self.access.authorize(s, actor, "write", coll)
            for key, value in fields.items():
                setattr(coll, key, value)
            coll.updated_at = utcnow()
            s.flush()
            return coll

    # ------------------------------------------------------------------ moves inside a drive
    # (added for the WebDAV drive: MOVE renames in place instead of copying every
    # byte, so moving a large file never needs free capacity for a second copy)
    def move_item(self, collection_id: int, name: str, dest_collection_id: int, dest_name: str,
                  actor: int | None = None, overwrite: bool = True) -> Item:
        """Move or rename a drive file; the item (id, body, grants, created_at) stays the same.

        Needs ``write`` on the item and ``bind`` on the destination (plus ``write`` on a
        destination item it replaces, which only happens with ``overwrite``). Source and
        destination must be folders of one owner, so usage does not change.
        """
        validate_item_name(dest_name)
        with self.write() as s:
            ids = sorted({collection_id, dest_collection_id})  # fixed lock order: no deadlock
            locked = {cid: self._locked_collection(s, cid) for cid in ids}
            src, dest = locked[collection_id], locked[dest_collection_id]
            if src.kind != "folder" or dest.kind != "folder" or src.owner_id != dest.owner_id:
                raise ValueError("files move only between folders of one owner")
            item = s.scalar(select(Item).where(Item.collection_id == src.id, Item.name == name))
            if item is None:
                raise NotFound(f"no item {name}")
            self.access.authorize(s, actor, "write", src, item)
            if src.id == dest.id and name == dest_name:
                return item
            existing = s.scalar(select(Item).where(Item.collection_id == dest.id, Item.name == dest_name))
            if existing is not None:
                if not overwrite:
                    raise PreconditionFailed(f"{dest_name} exists")
                self.access.authorize(s, actor, "write", dest, existing)
                self._remove_item(s, dest, existing)
                s.flush()
            else:
                self.access.authorize(s, actor, "bind", dest)
            self._record_change(s, src, item.name, item.uid, "deleted")
            item.collection_id = dest.id
            item.name = dest_name
            item.modseq = self._record_change(s, dest, dest_name, item.uid, "created")
            s.flush()
            return item

    def move_collection(self, collection_id: int, dest_parent_id: int, dest_name: str,
                        actor: int | None = None) -> Collection:
        """Move or rename a folder with everything below it (paths rewritten, ids kept).

        Needs ``write`` on the old and the new parent; refuses a drive root, a move into
        its own subtree, another owner's tree, and an existing destination (AlreadyExists).
        """
        validate_item_name(dest_name)
        with self.write() as s:
            coll = s.get(Collection, collection_id)
            parent = s.get(Collection, dest_parent_id)
            if coll is None or parent is None:
                raise NotFound("no such folder")
            if coll.kind != "folder" or parent.kind != "folder" or coll.owner_id != parent.owner_id:
                raise ValueError("folders move only inside one owner's drive")
            if coll.parent_id is None:
                raise PermissionDenied("the root of a drive cannot be moved", "write")
            old_parent = s.get(Collection, coll.parent_id)
            assert old_parent is not None
            if parent.id == coll.id or parent.path.startswith(coll.path + "/"):
                raise ValueError("a folder cannot move into itself")
            self.access.authorize(s, actor, "write", old_parent)
            self.access.authorize(s, actor, "write", parent)
            new_path = f"{parent.path}/{dest_name}" if parent.path else dest_name
            if new_path == coll.path:
                return coll
            if s.scalar(select(Collection.id).where(
                    Collection.owner_id == coll.owner_id, Collection.kind == coll.kind, Collection.path == new_path)):
                raise AlreadyExists(f"folder {new_path!r} exists")
            old_name = coll.path.rsplit("/", 1)[-1]
            prefix = coll.path + "/"
            for below in s.scalars(select(Collection).where(
                    Collection.owner_id == coll.owner_id, Collection.kind == coll.kind,
                    Collection.path.startswith(prefix, autoescape=True))):
                below.path = new_path + "/" + below.path[len(prefix):]
            if coll.display_name == old_name:
                coll.display_name = dest_name
            coll.path = new_path
            coll.parent_id = parent.id
            coll.updated_at = utcnow()
            self._record_change(s, old_parent, old_name + "/", None, "deleted")
            self._record_change(s, parent, dest_name + "/", None, "created")
            s.flush()
            return coll

    # ------------------------------------------------------------------ usage and blobs
    def usage(self, owner_id: int) -> dict[str, int]:
        with self.read() as s:
            return {u.tool: int(u.bytes) for u in s.scalars(select(Usage).where(Usage.owner_id == owner_id))}

    def collect_garbage(self, grace_seconds: float = 3600.0) -> int:
        """Remove blob files no item references; returns how many files went."""
        removed = 0
        with self.write() as s:
            cutoff = utcnow() - dt.timedelta(seconds=grace_seconds)
            dead = list(s.scalars(select(Blob.sha256).where(Blob.refcount <= 0, Blob.updated_at <= cutoff)))
            if dead:
                s.execute(delete(Blob).where(Blob.sha256.in_(dead), Blob.refcount <= 0))
        for sha in dead:
            removed += self.blobs.unlink_if_older(sha, grace_seconds)
        with self.read() as s:
            known = set(s.scalars(select(Blob.sha256)))
        for sha, _mtime in list(self.blobs.all_files()):
            if sha not in known and self.blobs.unlink_if_older(sha, grace_seconds):
                removed += 1
        self.blobs.remove_stale_temp(grace_seconds)
        return removed

    # ------------------------------------------------------------------ multi-recipient delivery
    # (added for SMTP: one DATA reply covers every recipient, so delivery to them is all or nothing)
    def deliver_message_to_mailboxes(
        self,
        mailbox_ids: Iterable[int],
        raw: bytes | BinaryIO,
        actor: int | None = None,
        max_size: int | None = None,
    ) -> dict[int, Item]:
        """Store one message in several mailboxes in ONE transaction: all get it, or none does.

        Like :meth:`deliver_message` per mailbox (right check, quota, next UID, change
        log); the body is stored once. Returns the new item by mailbox id.
        """
        ids = sorted(set(mailbox_ids))  # a fixed lock order: two deliveries never deadlock
        stored, sha, data = self._store_body(raw, max_size)
        if data is None:
            with self.blobs.open(sha) as fh:
                data = fh.read(256 * 1024)  # headers are at the top
        index = index_for("message/rfc822", data)
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
                item = Item(collection_id=coll.id, name=str(uid), uid=uid, created_at=utcnow(),
                            internaldate=utcnow(), flags="")
                self._apply_body(s, item, stored, sha, "message/rfc822", index)
                s.add(item)
                item.modseq = self._record_change(s, coll, item.name, uid, "created")
                s.flush()  # makes the Blob row visible to the next mailbox's refcount update
                items[mailbox_id] = item
            self._fault("before_commit")
        return items


def _same(column, value):  # type: ignore[no-untyped-def]
    """``column = value``, or ``column IS NULL`` for None (SQL's = never matches NULL)."""
    return column.is_(None) if value is None else column == value


def normalize_address(address: str) -> str:
    return address.strip().lower()


SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}


def normalize_flags(flags: Iterable[str]) -> list[str]:
    """Deduplicated flags (case-insensitive), system flags spelled canonically."""
    seen: dict[str, str] = {}
    for flag in flags:
        key = flag.lower()
        if key == "\\recent":
            continue  # session state, never stored
        seen.setdefault(key, SYSTEM_FLAGS.get(key, flag))
    return list(seen.values())


def validate_item_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\x00" in name or len(name) > 1024:
        raise ValueError(f"invalid item name {name!r}")


__all__ = [
    "AccessPolicy", "QuotaPolicy", "Store", "TOOL_OF_KIND", "DROP_FOLDER", "IntegrityError",
    "normalize_address", "normalize_flags",
]
