"""Mail domains and accounts: creation with a default space, look-up, update, deletion."""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, literal_column, select, union_all, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from kantoor.storage import raw_statements as raw
from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
)
from kantoor.storage.models import (
    Account,
    Alias,
    Change,
    Collection,
    Domain,
    Grant,
    Group,
    Item,
    Membership,
    Principal,
    Usage,
)
from kantoor.storage.names import (
    DEFAULT_MAILBOXES,
    DROP_FOLDER,
    normalize_address,
)
from kantoor.storage.transactions import StoreBase

try:  # IDNA2008 (RFC 5891) with the UTS #46 mapping: what registries and browsers use today.
    import idna
except ImportError:  # pragma: no cover - Python's own codec, IDNA2003 (maps ß to ss, allows symbols)
    idna = None

# A host name's label in its ASCII form (RFC 1035 section 2.3.1, RFC 1123 section 2.1): letters, digits and
# inner hyphens, 1 to 63 characters (compared after case-folding).
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# A last label that is a number (decimal, or 0x… hexadecimal as inet_aton reads it) makes the name an IPv4
# address to resolvers and browsers (RFC 3696 section 2: a top-level domain is never all-numeric).
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")


def domain_name(name: str) -> str:
    """The one spelling of a mail domain's name that is stored, compared, keyed and published.

    A host name (RFC 1035/1123 letter-digit-hyphen labels, at most 253 characters), case-folded, without
    the trailing dot of an absolute name. An internationalized name becomes its A-labels (``xn--…``): the
    U-label and A-label spellings are one domain, and zone-file lines are ASCII. A single label
    (``localhost``, the default mail domain) is allowed. ValueError names what is wrong: an address literal,
    an IP address, an empty or over-long label, a character a host name cannot have.
    """
    text = name.strip()
    text = text[:-1] if text.endswith(".") else text  # one dot: "a.test.." still has an empty label
    if text.startswith("[") or ":" in text:
        raise _not_a_domain(name, "an address literal; a mail domain is a name")
    ascii_name = _ascii_form(name, text)
    labels = ascii_name.split(".")
    for label in labels:
        _check_label(name, label)
    if len(ascii_name) > 253:
        raise _not_a_domain(name, "longer than 253 characters")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise _not_a_domain(name, "an IP address, not a name")
    return ascii_name


def _not_a_domain(name: str, reason: str) -> ValueError:
    # repr: a tab or a newline in the name shows as \t or \n, and the message stays one line.
    return ValueError(f"not a domain name: {name!r} ({reason})")


def _ascii_form(name: str, text: str) -> str:
    """``text`` lower-cased, with internationalized labels as A-labels; A-labels given are checked to
    decode to a valid U-label, so ``xn--`` names that no one can type are not accepted as a new domain."""
    if text.isascii() and "xn--" not in text.lower():
        return text.lower()
    try:
        if idna is not None:
            return idna.encode(text, uts46=True).decode("ascii")
        encoded = text.encode("idna")
        encoded.decode("idna")  # the codec passes ASCII labels through: this checks given A-labels
        return encoded.decode("ascii").lower()
    except UnicodeError as exc:  # idna.IDNAError is one
        raise _not_a_domain(name, f"not a valid internationalized name: {exc}") from None


def _check_label(name: str, label: str) -> None:
    if not label:
        raise _not_a_domain(name, "an empty label")
    if len(label) > 63:
        raise _not_a_domain(name, f"label {label[:16]}… is longer than 63 characters")
    if not _LDH_LABEL.match(label):
        raise _not_a_domain(name, f"label {label!r}: letters, digits and hyphens only, no hyphen first or last")


@dataclass(frozen=True)
class MailRecipient:
    """What an MX needs to accept mail for an address: whose it is, their INBOX, their mail usage."""

    account_id: int
    principal_id: int
    login: str
    plan: str
    inbox_id: int | None  # None: the account has no INBOX
    mail_bytes: int  # the account's mail usage now (advisory: delivery reserves quota itself)


# The recipient look-up as ONE statement (built once, Core columns: no ORM objects): every
# address that may name the account (login or alias, as given and without a +tag), each row
# carrying the INBOX id and the mail usage as correlated subqueries. Three read sessions per
# RCPT before (account, mailbox, usage) were 13 % of an MX's CPU per message.
_ACC, _ALIAS = Account.__table__.c, Alias.__table__.c
_COLL, _USAGE = Collection.__table__.c, Usage.__table__.c
_RECIPIENT_COLUMNS = (
    _ACC.id, _ACC.principal_id, _ACC.login, _ACC.plan, _ACC.state,
    select(_COLL.id).where(_COLL.owner_id == _ACC.principal_id, _COLL.kind == "mailbox", _COLL.path == "INBOX")
    .scalar_subquery().label("inbox_id"),
    select(_USAGE.bytes).where(_USAGE.owner_id == _ACC.principal_id, _USAGE.tool == "mail")
    .scalar_subquery().label("mail_bytes"),
)


@functools.lru_cache(maxsize=8)  # per dialect and number of candidate addresses (1 or 2)
def _recipient_rows(dialect: Dialect, candidates: int) -> raw.RawStatement:
    """The look-up for ``candidates`` addresses (parameters ``a0``, ``a1``), compiled once and run on a pooled
    connection (raw_statements.read_rows): through a read Session, SQLAlchemy's session, transaction and
    result objects were ~4/5 of the look-up's CPU, the database's work the rest. Plain parameters, not an
    expanding IN (that is rendered anew at every execution)."""
    addresses = [bindparam(f"a{n}") for n in range(candidates)]
    statement = union_all(
        select(_ACC.login.label("matched"), literal_column("0").label("alias"), *_RECIPIENT_COLUMNS)
        .where(_ACC.login.in_(addresses)),
        select(_ALIAS.address.label("matched"), literal_column("1").label("alias"), *_RECIPIENT_COLUMNS)
        .select_from(Alias.__table__.join(Account.__table__, _ALIAS.account_id == _ACC.id))
        .where(_ALIAS.address.in_(addresses)),
    )
    return raw.RawStatement(statement, dialect)


class AccountsMixin(StoreBase):
    # ------------------------------------------------------------------ domains
    def add_domain(self, name: str, owner_login: str | None = None) -> Domain:
        """Serve mail for ``name``, stored as :func:`domain_name` spells it (ValueError if it is not one)."""
        name = domain_name(name)
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
        """Whether mail for ``name`` is ours: compared in :func:`domain_name`'s spelling, so an address's
        U-label domain (SMTPUTF8) matches the stored A-label; what is no domain name (an address literal)
        is never ours."""
        try:
            name = domain_name(name)
        except ValueError:
            return False
        with self.read() as s:
            return s.scalar(select(Domain.id).where(Domain.name == name)) is not None

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

    def mail_recipient(self, address: str) -> MailRecipient | None:
        """:meth:`resolve_recipient` with the account's INBOX and mail usage, in one statement.

        The same precedence: the login, then an alias, as given; then both without the
        ``+tag``; an address that names an account that is not active gets None.
        """
        address = normalize_address(address)
        candidates = [address]
        local, at, domain = address.partition("@")
        if "+" in local:
            candidates.append(f"{local.split('+', 1)[0]}{at}{domain}")
        statement = _recipient_rows(self.engine.dialect, len(candidates))
        rows = raw.read_rows(self.engine, statement, {f"a{n}": c for n, c in enumerate(candidates)})
        if not rows:
            return None
        # Lowest (candidate, alias) pair wins: what _find_account would have found first.
        row = min(rows, key=lambda r: (candidates.index(r["matched"]) if r["matched"] in candidates else 9,
                                       int(r["alias"])))
        if row["state"] != "active":
            return None
        return MailRecipient(account_id=row["id"], principal_id=row["principal_id"], login=row["login"],
                             plan=row["plan"], inbox_id=row["inbox_id"], mail_bytes=int(row["mail_bytes"] or 0))

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

