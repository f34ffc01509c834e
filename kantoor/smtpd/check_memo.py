"""The MX's SPF result and DMARC record look-up, kept for exactly as long as the DNS answers they came from.

Mail from one sender arrives in bursts, and for each message pyspf evaluates the same policy again
(~30 µs from cached answers) and authheaders looks up the same DMARC records (~15 µs). Both are pure
functions of their arguments and of DNS answers: ``spf.check2(ip, mail_from, helo)`` and
``receiver_record(from_domain)``. Their results are kept here with a deadline: the moment the first of
the DNS answers read while computing them expires (:func:`kantoor.smtpd.answer_cache.answers_read`,
the same expirations the resolver's cache honours). A result computed from any answer that could not be
kept (no answer of the type, a timeout, a server failure), from no answer at all (another resolver than
ours, or no look-up), or that raised, is not kept. So a kept result is never older than its answers
allow, and an answer that changes is seen by the first check after the old one's TTL.

:func:`install` puts the kept versions in authheaders' namespace (where authenticate_message and
dmarc_per_from find them), beside :mod:`kantoor.smtpd.org_domain`'s replacement there. What is kept
are pyspf's (result, reason) strings and copies of the DMARC record: authheaders changes the result
objects it builds from them (DMARC alignment rewrites the SPF result's ``smtp.mailfrom``), so every
message gets objects of its own.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from kantoor.smtpd.answer_cache import answers_read

MAX_ENTRIES = 10_000


class _Kept:
    """Results by key, each with its deadline (a bounded dict: a full one keeps only its live entries)."""

    def __init__(self) -> None:
        self._results: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        kept = self._results.get(key)
        if kept is not None and kept[0] > time.time():
            return True, kept[1]
        return False, None

    def put(self, key: Hashable, until: float, value: Any) -> None:
        with self._lock:
            if len(self._results) >= MAX_ENTRIES:
                now = time.time()
                live = {k: v for k, v in self._results.items() if v[0] > now}
                self._results = live if len(live) < MAX_ENTRIES // 2 else {}
            self._results[key] = (until, value)

    def clear(self) -> None:
        with self._lock:
            self._results = {}


def _kept_while_answers_hold(func: Callable[..., Any], key: Callable[..., Hashable | None],
                             copy: Callable[[Any], Any] = lambda value: value,
                             final: Callable[[Any], bool] = lambda value: True) -> Callable[..., Any]:
    """``func`` with its results kept until the DNS answers they were computed from expire; ``key`` gives the
    arguments' key (None: not kept), ``copy`` what a caller gets of a kept result (they may change it),
    ``final`` whether a result may be kept at all."""
    kept = _Kept()

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        at = key(*args, **kwargs)
        if at is not None:
            found, value = kept.get(at)
            if found:
                return copy(value)
        with answers_read() as read:
            value = func(*args, **kwargs)
        if at is not None and read.count and read.until > time.time() and final(value):
            kept.put(at, read.until, value)
            return copy(value)
        return value

    wrapper.forget = kept.clear  # type: ignore[attr-defined]
    return wrapper


def _spf_key(ip: Any, mail_from: Any, helo: Any, *more: Any, **named: Any) -> Hashable | None:
    return None if more or named else (ip, mail_from, helo)


_installed: dict[str, Callable[..., Any]] = {}


def _check_spf(ip: str, mail_from: str, helo: str) -> Any:
    """authheaders' ``check_spf`` (the same lines), with pyspf's answer kept: a new result object every call."""
    from authres import SPFAuthenticationResult

    res, reason = _installed["check2"](ip, mail_from, helo)
    if res is not None:
        return SPFAuthenticationResult(result=res, reason=reason, smtp_mailfrom=mail_from, smtp_helo=helo)
    return SPFAuthenticationResult(result=None, reason=None, smtp_mailfrom=mail_from, smtp_helo=helo)


def _record_key(host: Any, *more: Any, **named: Any) -> Hashable | None:
    return None if more or named else host  # a dnsfunc of the caller's (tests): not ours to keep


def _copy_record(value: Any) -> Any:
    record, orgdomain = value
    return (dict(record) if isinstance(record, dict) else record), orgdomain


def install() -> None:
    """Make authheaders' SPF check and DMARC record look-up keep their results (idempotent)."""
    import authheaders
    import spf

    if "check2" not in _installed:
        # pyspf also gives "temperror" when its lookups together took too long (RFC 7208 section 4.6.4),
        # though each answer came: a temporary error is never kept.
        _installed["check2"] = _kept_while_answers_hold(spf.check2, _spf_key,
                                                        final=lambda value: value[0] != "temperror")
        _installed["receiver_record"] = _kept_while_answers_hold(authheaders.receiver_record, _record_key,
                                                                 _copy_record)
    authheaders.check_spf = _check_spf
    authheaders.receiver_record = _installed["receiver_record"]


def forget() -> None:
    """Drop every kept result (when the checks are pointed at other name servers)."""
    for wrapper in _installed.values():
        wrapper.forget()  # type: ignore[attr-defined]
