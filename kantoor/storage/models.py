"""SQLAlchemy models: the data model of ARCHITECTURE.md.

Accounts and groups are both *principals*: one ``principals`` row each, so that
collections, grants and usage can point at "an account or a group" with a real
foreign key. Every container (mailbox, calendar, address book, drive folder) is a
``Collection``; every thing in one (message, event, vCard, file) is an ``Item``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on every backend.

    SQLite stores datetimes as text without a zone and hands back naive values;
    this type stores UTC and always returns aware datetimes, so code never has to
    care which database it runs on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


TS = UTCDateTime()


class Principal(Base):
    __tablename__ = "principals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # account | group


class Plan(Base):
    """A subscription plan; the catalogue is synchronised from settings at start."""

    __tablename__ = "plans"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    mail_bytes: Mapped[int] = mapped_column(BigInteger)
    documents_bytes: Mapped[int] = mapped_column(BigInteger)
    calendar_bytes: Mapped[int] = mapped_column(BigInteger)
    max_groups: Mapped[int] = mapped_column(Integer)
    max_members: Mapped[int] = mapped_column(Integer)
    imap: Mapped[bool] = mapped_column(Boolean)
    smtp: Mapped[bool] = mapped_column(Boolean)
    webdav: Mapped[bool] = mapped_column(Boolean)
    caldav: Mapped[bool] = mapped_column(Boolean)


class Domain(Base):
    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), unique=True)
    login: Mapped[str] = mapped_column(String(320), unique=True)  # primary e-mail address
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    organisation: Mapped[str] = mapped_column(String(200), default="")
    photo: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    plan: Mapped[str] = mapped_column(ForeignKey("plans.name"))
    state: Mapped[str] = mapped_column(String(16), default="active")  # pending|active|disabled
    role: Mapped[str] = mapped_column(String(16), default="user")  # user|org_admin|admin
    session_timeout_minutes: Mapped[int] = mapped_column(Integer, default=60)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(TS, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)

    aliases: Mapped[list[Alias]] = relationship(
        back_populates="account", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.login


class Alias(Base):
    """Extra addresses that deliver to an account (and that it may send as)."""

    __tablename__ = "aliases"
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    account: Mapped[Account] = relationship(back_populates="aliases")


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    can_write: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class Collection(Base):
    """Any container: mailbox, calendar, address book or drive folder."""

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("owner_id", "kind", "path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # mailbox|calendar|addressbook|folder
    # Slash-separated path inside the owner's tree of this kind ("" = drive root).
    path: Mapped[str] = mapped_column(String(1024))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), nullable=True, index=True
    )
    display_name: Mapped[str] = mapped_column(String(400), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    color: Mapped[str] = mapped_column(String(32), default="")
    # Calendar component set ("VEVENT", "VTODO,VJOURNAL" …); empty for other kinds.
    components: Mapped[str] = mapped_column(String(64), default="")
    special_use: Mapped[str] = mapped_column(String(32), default="")  # \\Sent, drop, …
    # Highest modseq handed out in this collection; bumps with every change.
    modseq: Mapped[int] = mapped_column(BigInteger, default=0)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=1)
    uidnext: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    # --- IMAP \Recent (RFC 3501 2.3.2; issue 5, migration 0004): messages with a UID above this
    # are recent; the first session to SELECT claims them by raising it, atomically, in the database.
    recent_uid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Blob(Base):
    """A content-addressed body on disk; rows count references from items."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    refcount: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class Item(Base):
    """One message, calendar object, vCard or file."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("collection_id", "name"),
        UniqueConstraint("collection_id", "uid"),
        Index("ix_items_ical_uid", "collection_id", "ical_uid"),
        Index("ix_items_time", "collection_id", "dtstart", "dtend"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1024))  # DAV href segment / file name
    uid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # IMAP UID
    blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), nullable=True, index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    etag: Mapped[str] = mapped_column(String(80))
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    modseq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    # Calendar / contact index columns.
    component: Mapped[str] = mapped_column(String(16), default="")  # VEVENT|VTODO|VJOURNAL|VCARD
    ical_uid: Mapped[str | None] = mapped_column(String(512), nullable=True)
    dtstart: Mapped[dt.datetime | None] = mapped_column(TS, nullable=True)
    dtend: Mapped[dt.datetime | None] = mapped_column(TS, nullable=True)
    recurring: Mapped[bool] = mapped_column(Boolean, default=False)
    fn: Mapped[str] = mapped_column(String(512), default="")
    emails: Mapped[str] = mapped_column(Text, default="")
    # vCard search columns (kantoor.storage.card_search): folded values between newlines;
    # NULL = not indexed (not a vCard, or stored before indexing): always a query candidate.
    card_fn: Mapped[str | None] = mapped_column(Text, nullable=True)
    card_n: Mapped[str | None] = mapped_column(Text, nullable=True)
    card_email: Mapped[str | None] = mapped_column(Text, nullable=True)
    card_tel: Mapped[str | None] = mapped_column(Text, nullable=True)
    card_nickname: Mapped[str | None] = mapped_column(Text, nullable=True)
    card_org: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Message index columns.
    internaldate: Mapped[dt.datetime | None] = mapped_column(TS, nullable=True)
    flags: Mapped[str] = mapped_column(Text, default="")  # as stored; now: MessageFlags
    subject: Mapped[str] = mapped_column(Text, default="")
    from_addr: Mapped[str] = mapped_column(Text, default="")
    to_addr: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(998), default="")
    # --- IMAP message cache (issue 5, migration 0004): computed once at delivery, NULL for
    # messages stored before 0004 (filled in lazily on first use). The wire form of
    # ENVELOPE / BODYSTRUCTURE / BODY, as Dovecot keeps them in its index cache, so FETCH
    # writes them without opening the body; sent_date is the Date header's own calendar day
    # (SEARCH SENTBEFORE/SENTON/SENTSINCE, RFC 3501 6.4.4).
    imap_envelope: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)
    imap_bodystructure: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)
    imap_body: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)
    sent_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    # Last in the row (migration 0007): SQLite keeps a row's columns in this order and a body of tens of KiB
    # in overflow pages, so every column before it is read without walking the body's pages.
    inline_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


# --- IMAP mail index tables (issue 5, migration 0004) ----------------------------------------
# CONDSTORE and IDLE refreshes ask "which messages changed after modseq n" (RFC 7162 3.1).
Index("ix_items_collection_modseq", Item.collection_id, Item.modseq)
# Messages stored before migration 0004 still to be indexed: a partial index holds just those, so checking
# "anything left to index?" costs nothing once a mailbox is done.
Index("ix_items_unindexed_mail", Item.collection_id, sqlite_where=Item.imap_envelope.is_(None),
      postgresql_where=Item.imap_envelope.is_(None))


class MessageHeader(Base):
    """One header field of a message, decoded (RFC 2047) and lower-cased: SEARCH HEADER/FROM/TO/CC/BCC/SUBJECT
    run as SQL over these rows (RFC 3501 6.4.4 matches case-insensitive substrings)."""

    __tablename__ = "message_headers"
    __table_args__ = (Index("ix_message_headers_item_name", "item_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))  # lower-case field name
    value: Mapped[str] = mapped_column(Text, default="")  # decoded, lower-case, capped


class MessageText(Base):
    """The decoded text parts of a message (MIME transfer encoding and charset undone, lower-cased,
    capped): SEARCH BODY/TEXT run as SQL over it instead of reading every body."""

    __tablename__ = "message_texts"
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    body: Mapped[str] = mapped_column(Text, default="")


class SearchBacklog(Base):
    """A delivered message whose SEARCH rows (:class:`MessageHeader`, :class:`MessageText`) are still to be
    written. A delivery stores the message, its flags and its ENVELOPE/BODYSTRUCTURE cache at once and leaves
    the search rows to the server's indexer, which writes them once deliveries pause (as Dovecot's and
    Stalwart's full-text indexers run after delivery); a SEARCH first indexes what its mailbox still has here."""

    __tablename__ = "search_backlog"
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True,
                                         autoincrement=False)


class MailUserFlags(Base):
    """System flags (\\Seen \\Answered \\Flagged \\Deleted \\Draft) of one user on one message of a
    mailbox that user does not own (a group mailbox, a folder shared with them): each reader has their own.
    ``modseq`` is when this user's flags last changed (their CONDSTORE view, RFC 7162)."""

    __tablename__ = "mail_user_flags"
    __table_args__ = (Index("ix_mail_user_flags_view", "collection_id", "principal_id", "modseq"),)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    flags: Mapped[str] = mapped_column(Text, default="")
    modseq: Mapped[int] = mapped_column(BigInteger, default=0)


class MessageFlags(Base):
    """A message's current flags and modseq (migration 0006): STORE, SELECT's unseen count, flag SEARCH keys
    and CONDSTORE read and write this narrow row, never the wide ``items`` row (up to a 16 KiB inline body
    plus the ENVELOPE/BODYSTRUCTURE cache, which a flag change would rewrite whole). ``items.flags`` and
    ``items.modseq`` of a message keep what it had when stored; this row is what it has now.
    ``collection_id``/``uid`` are copies of the item's, so a mailbox's flags are one index range."""

    __tablename__ = "message_flags"
    __table_args__ = (
        Index("ix_message_flags_uid", "collection_id", "uid", "flags", "modseq"),
        Index("ix_message_flags_modseq", "collection_id", "modseq"),
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[str] = mapped_column(Text, default="")  # space-separated, system flags first
    modseq: Mapped[int] = mapped_column(BigInteger, default=0)


class Grant(Base):
    """A right on a collection or a single item, given to an account or a group."""

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("collection_id", "item_id", "grantee_id"),
        Index("ix_grants_grantee", "grantee_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), nullable=True, index=True
    )
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), nullable=True, index=True)
    grantee_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"))
    right: Mapped[str] = mapped_column(String(16))  # freebusy|read|write|bind|admin
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class Change(Base):
    """Append-only change log per collection (sync tokens, CONDSTORE, IDLE)."""

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_collection_modseq", "collection_id", "modseq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    modseq: Mapped[int] = mapped_column(BigInteger)
    item_name: Mapped[str] = mapped_column(String(1024))
    item_uid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # created|modified|deleted
    at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class Usage(Base):
    """Bytes used per owner and tool, updated in the same transaction as each write."""

    __tablename__ = "usage"
    owner_id: Mapped[int] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True)
    tool: Mapped[str] = mapped_column(String(16), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class LoginFailure(Base):
    """Failed-login counters per account and per client address (shared by processes)."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)  # "account:x" / "address:y"
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320), default="")
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")


class DeadProperty(Base):
    """A WebDAV/CalDAV property clients set that the server does not interpret (RFC 4918 §4.2)."""

    __tablename__ = "dead_properties"
    __table_args__ = (UniqueConstraint("collection_id", "item_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), nullable=True, index=True
    )
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(512))  # Clark notation: {namespace}local-name
    value: Mapped[str] = mapped_column(Text, default="")  # the property element as XML text


class Lock(Base):
    """A WebDAV lock (RFC 4918 §6), in the database so every server process honours it."""

    __tablename__ = "locks"
    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    root: Mapped[str] = mapped_column(String(2048), index=True)  # the locked URL path
    scope: Mapped[str] = mapped_column(String(16))  # exclusive|shared
    type: Mapped[str] = mapped_column(String(16), default="write")
    depth: Mapped[str] = mapped_column(String(16))  # "0" | "infinity"
    owner: Mapped[str] = mapped_column(Text, default="")  # the client's DAV:owner XML
    principal: Mapped[str] = mapped_column(String(320), default="")  # login of the lock holder
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime] = mapped_column(TS, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class OutboundMessage(Base):
    """The outbound mail queue: one row per message and remote recipient domain batch.

    A delivery worker claims a row (``claimed_by``/``claimed_until``) inside a
    transaction, so with several server processes each message is tried by one.
    """

    __tablename__ = "outbound_messages"
    __table_args__ = (Index("ix_outbound_due", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sender: Mapped[str] = mapped_column(String(320))  # envelope MAIL FROM ("" for bounces)
    recipients: Mapped[str] = mapped_column(Text)  # JSON list of envelope recipients still to deliver
    # How many recipients the message was queued for (what the hourly recipient limit counts; ``recipients``
    # shrinks as they are delivered).
    recipient_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), nullable=True)
    inline_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(TS)
    last_error: Mapped[str] = mapped_column(Text, default="")
    claimed_by: Mapped[str] = mapped_column(String(100), default="")
    claimed_until: Mapped[dt.datetime | None] = mapped_column(TS, nullable=True)
    dsn_envid: Mapped[str] = mapped_column(String(100), default="")
    dsn_ret: Mapped[str] = mapped_column(String(8), default="")  # FULL|HDRS
    # RFC 3461 per recipient: JSON {address: {"notify": "SUCCESS,FAILURE", "orcpt": "rfc822;a@b"}}.
    dsn_recipients: Mapped[str] = mapped_column(Text, default="{}")
    delay_notified: Mapped[bool] = mapped_column(Boolean, default=False)  # the one "delayed" DSN was sent
    smtputf8: Mapped[bool] = mapped_column(Boolean, default=False)  # received with MAIL … SMTPUTF8 (RFC 6531)
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class ServerNotice(Base):
    """A notice the server mailed to an account (e.g. "mailbox almost full"), kept so it is sent once
    until its cause goes away (the row is then removed)."""

    __tablename__ = "server_notices"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
