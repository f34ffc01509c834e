"""The RCPT look-ups a process keeps for a second (kantoor.smtpd.recipient_cache)."""

from __future__ import annotations

import time

from kantoor.smtpd.recipient_cache import RecipientCache
from kantoor.storage.accounts import MailRecipient


def _recipient(mail_bytes: int = 0) -> MailRecipient:
    return MailRecipient(account_id=1, principal_id=2, login="ann@example.org", plan="standard", inbox_id=3,
                         mail_bytes=mail_bytes)


def test_a_found_recipient_is_kept_for_its_ttl_whatever_the_case() -> None:
    cache = RecipientCache(ttl=0.2)
    cache.put("Ann@Example.org", _recipient())
    assert cache.get("ann@example.ORG") == _recipient()
    time.sleep(0.25)
    assert cache.get("ann@example.org") is None


def test_deliveries_of_this_process_count_in_the_kept_usage() -> None:
    cache = RecipientCache()
    cache.put("ann@example.org", _recipient(100))
    cache.delivered(["ANN@example.org", "nobody@example.org"], 50)
    found = cache.get("ann@example.org")
    assert found is not None and found.mail_bytes == 150
    assert cache.get("nobody@example.org") is None


def test_it_never_holds_more_than_its_size() -> None:
    cache = RecipientCache(max_entries=10)
    for n in range(35):
        cache.put(f"u{n}@example.org", _recipient())
    assert len(cache._entries) <= 10
    assert cache.get("u34@example.org") is not None  # the newest stay
