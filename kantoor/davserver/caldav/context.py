"""What Radicale's plugins need from Kantoor, and what one request carries.

Radicale builds its plugins itself, from its configuration: ``[storage] type``,
``[auth] type`` and ``[rights] type`` may each be a *callable* that receives the
configuration and returns the plugin (``radicale.utils.load_plugin``). We give
it closures over one :class:`DavContext`, so every plugin of one application
shares the same Store, Authenticator and QuotaEngine without any module-level
registry (two applications in one process never see each other's core).

Per-request facts (who is logged in, the request's If-Match / If-None-Match)
travel in a :class:`contextvars.ContextVar`: the gate sets it around the call
into Radicale, which runs the whole request synchronously in that one worker
thread, so the storage plugin can pass the actor and the preconditions on to
the Store, which checks them inside its write transaction.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.storage import Store
from kantoor.storage.models import Account


@dataclass(frozen=True)
class DavContext:
    settings: Settings
    store: Store
    authenticator: Authenticator
    quota: QuotaEngine


@dataclass(frozen=True)
class RequestState:
    """The authenticated account (None: anonymous) and the request's preconditions."""

    account: Account | None = None
    path: str = ""  # sanitized Radicale path of the request target
    if_match: str | None = None
    if_none_match: bool = False
    # Rights letters already worked out for this request, by Radicale path.
    rights_cache: dict[str, str] = field(default_factory=dict, compare=False)
    # What others share with the account, looked up once per request (see ``bindings``).
    shares: dict[int, object] = field(default_factory=dict, compare=False)
    # Items looked up by (collection id, name) before this request wrote anything: a PUT or
    # DELETE reuses the row Radicale's lookup found to see what it replaces (``invitations``).
    looked_up: dict[tuple[int, str], object] = field(default_factory=dict, compare=False)

    @property
    def actor(self) -> int | None:
        # Anonymous requests must never act as the system (actor None), so they
        # get a principal id no row has: the ACL engine then grants nothing.
        return self.account.principal_id if self.account is not None else ANONYMOUS

    @property
    def login(self) -> str:
        return self.account.login if self.account is not None else ""


ANONYMOUS = -1

_current: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("kantoor_dav_request", default=None)
_ANONYMOUS_STATE = RequestState()


def current_request() -> RequestState:
    return _current.get() or _ANONYMOUS_STATE


@contextmanager
def request_state(state: RequestState) -> Iterator[RequestState]:
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


# The body of the PUT being handled, as the client sent it: Radicale re-serializes
# what it parsed, which vobject gets wrong for some vCard 4.0 values (data: URIs),
# so the storage plugin stores the client's own bytes when they describe the same object.
_put_body: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("kantoor_dav_put_body", default=None)


def current_put_body() -> bytes | None:
    return _put_body.get()


@contextmanager
def put_body(body: bytes) -> Iterator[bytes]:
    token = _put_body.set(body)
    try:
        yield body
    finally:
        _put_body.reset(token)
