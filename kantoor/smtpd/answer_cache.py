"""The MX checks' resolver: dnspython's, with the answers it already holds handed out in one dict look-up.

SPF, DKIM and DMARC ask for the same few names for every message from a sender domain (authheaders
asks for the ``_dmarc`` record twice per message). dnspython's own cache keeps those answers for their
TTL, but a hit still goes through its whole resolution: the name parsed, a request object, the search
list, and for a name that does not exist a new exception (~60 µs per look-up, three per message: about
half the checks' time). :class:`CachingResolver` keeps, per question as asked, the answer dnspython
gave and the moment it expires — the same moment dnspython's cache drops it: a positive answer's
expiration (its TTL), and for NXDOMAIN the expiration dnspython gave that negative entry (RFC 2308).
Anything else (no answer of the type, timeouts, server failures) is not kept here and goes through
dnspython every time, as before.

:func:`answers_read` tells a computation (an SPF or DMARC check, :mod:`kantoor.smtpd.check_memo`) until
when every answer it read holds — or that one of them could not be kept at all — so that its result is
never kept longer than the answers it was computed from.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver

MAX_ENTRIES = 10_000


class _Nxdomain:
    """A kept NXDOMAIN: what raising it again needs (every raise gets a new exception object: raising one
    object again would chain tracebacks, and threads would share it)."""

    __slots__ = ("qnames", "responses", "message")

    def __init__(self, error: dns.resolver.NXDOMAIN) -> None:
        self.qnames = error.qnames()
        self.responses = error.responses()
        self.message = error.msg

    def error(self) -> dns.resolver.NXDOMAIN:
        """An exception equal to the one kept (same kwargs, message and args). Built without ``__init__``, which
        checks the arguments and formats the message from the names anew (~10 µs each, three per message)."""
        error = dns.resolver.NXDOMAIN.__new__(dns.resolver.NXDOMAIN, self.message)
        error.kwargs = {"qnames": self.qnames, "responses": self.responses}
        error.msg = self.message
        return error


class AnswersRead:
    """The DNS answers one computation read through a :class:`CachingResolver`: how many, and the moment the
    first of them expires (minus infinity once one could not be kept: an empty answer, a failure)."""

    __slots__ = ("count", "until")

    def __init__(self) -> None:
        self.count = 0
        self.until = math.inf

    def note(self, expires: float | None) -> None:
        self.count += 1
        self.until = min(self.until, -math.inf if expires is None else expires)


_reading = threading.local()


@contextmanager
def answers_read() -> Iterator[AnswersRead]:
    """Note, in this thread until the block ends, every answer the resolver gives (nested blocks count in the
    outer one too)."""
    outer: AnswersRead | None = getattr(_reading, "current", None)
    read = _reading.current = AnswersRead()
    try:
        yield read
    finally:
        _reading.current = outer
        if outer is not None:
            outer.count += read.count
            outer.until = min(outer.until, read.until)


def _note(expires: float | None) -> None:
    read: AnswersRead | None = getattr(_reading, "current", None)
    if read is not None:
        read.note(expires)


class CachingResolver(dns.resolver.Resolver):
    """A ``dns.resolver.Resolver`` (with a cache) that answers a question it has a live answer for at once."""

    def __init__(self, filename: str = "/etc/resolv.conf", configure: bool = True) -> None:
        super().__init__(filename, configure)
        self._answers: dict[tuple[Any, ...], tuple[float, dns.resolver.Answer | _Nxdomain]] = {}

    def resolve(  # type: ignore[override]
        self,
        qname: dns.name.Name | str,
        rdtype: dns.rdatatype.RdataType | str = dns.rdatatype.A,
        rdclass: dns.rdataclass.RdataClass | str = dns.rdataclass.IN,
        tcp: bool = False,
        source: str | None = None,
        raise_on_no_answer: bool = True,
        source_port: int = 0,
        lifetime: float | None = None,
        search: bool | None = None,
    ) -> dns.resolver.Answer:
        # The question as asked: how it is sent (tcp, source, lifetime) does not change a kept answer.
        key = (qname if isinstance(qname, str) else qname.to_text(), rdtype, rdclass, search)
        kept = self._answers.get(key)
        if kept is not None and kept[0] > time.time():
            _note(kept[0])
            if isinstance(kept[1], _Nxdomain):
                raise kept[1].error()
            return kept[1]
        try:
            answer = super().resolve(qname, rdtype, rdclass, tcp, source, raise_on_no_answer, source_port,
                                     lifetime, search)
        except dns.resolver.NXDOMAIN as error:
            expires = self._nxdomain_expiration(error, rdclass)
            _note(expires)
            if expires is not None:
                self._keep(key, expires, _Nxdomain(error))
            raise
        except BaseException:
            _note(None)  # a failure: nothing computed from it may be kept
            raise
        if answer.rrset is not None:
            _note(answer.expiration)
            self._keep(key, answer.expiration, answer)
        else:
            _note(None)
        return answer

    def _nxdomain_expiration(self, error: dns.resolver.NXDOMAIN, rdclass: Any) -> float | None:
        """When dnspython's cache forgets this NXDOMAIN (the first of its names to go), or None if it does
        not hold it."""
        if not self.cache:
            return None
        rdclass = dns.rdataclass.RdataClass.make(rdclass)
        expirations = []
        for name in error.qnames():
            entry = self.cache.get((name, dns.rdatatype.ANY, rdclass))
            if entry is None:
                return None
            expirations.append(entry.expiration)
        return min(expirations, default=None)

    def _keep(self, key: tuple[Any, ...], expires: float, value: dns.resolver.Answer | _Nxdomain) -> None:
        if len(self._answers) >= MAX_ENTRIES:
            now = time.time()
            live = {k: v for k, v in list(self._answers.items()) if v[0] > now}
            # Still full of live answers: start over (dnspython's cache still has them).
            self._answers = live if len(live) < MAX_ENTRIES // 2 else {}
        self._answers[key] = (expires, value)

    def flush_answers(self) -> None:
        """Forget the kept answers (dnspython's cache is flushed separately, with ``cache.flush()``)."""
        self._answers = {}

