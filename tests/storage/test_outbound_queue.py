"""The outbound queue (OutboundMessage): bodies counted like items, claims by exactly one worker."""

from __future__ import annotations

import datetime as dt

import pytest

from kantoor.storage import NotFound
from kantoor.storage.models import Blob
from kantoor.storage.outbound import NewOutbound, SentCount, recipients_of


def _blob_refcount(core, sha: str) -> int:  # type: ignore[no-untyped-def]
    with core.store.read() as s:
        blob = s.get(Blob, sha)
        return blob.refcount if blob else 0


def test_enqueue_claim_deliver_releases_the_body(core) -> None:  # type: ignore[no-untyped-def]
    big = b"Subject: big\r\n\r\n" + b"x" * (core.store.inline_limit + 10)
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["bob@example.net"], big))
    assert row.blob_sha256 and _blob_refcount(core, row.blob_sha256) == 1
    claimed = core.store.claim_outbound("w1", lease_seconds=60)
    assert [m.id for m in claimed] == [row.id]
    assert core.store.outbound_body(claimed[0]) == big
    assert recipients_of(claimed[0]) == ["bob@example.net"]
    assert core.store.claim_outbound("w2", lease_seconds=60) == []  # claimed by exactly one
    assert core.store.finish_outbound(row.id, "w1", "delivered")
    assert _blob_refcount(core, row.blob_sha256) == 0
    assert core.store.get_outbound(row.id).state == "delivered"
    assert core.store.list_outbound() == []


def test_defer_reschedules_and_a_lost_lease_records_nothing(core) -> None:  # type: ignore[no-untyped-def]
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net", "b@x.net"], b"hi"))
    core.store.claim_outbound("w1", lease_seconds=60)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert core.store.defer_outbound(row.id, "w1", ["b@x.net"], "451 busy", later)
    assert core.store.claim_outbound("w1", lease_seconds=60) == []  # not due yet
    again = core.store.claim_outbound("w2", lease_seconds=60, now=later + dt.timedelta(seconds=1))
    assert [recipients_of(m) for m in again] == [["b@x.net"]] and again[0].attempts == 1
    assert not core.store.finish_outbound(row.id, "w1", "delivered")  # w1 no longer holds it
    # An expired lease lets another worker take over.
    taken = core.store.claim_outbound("w3", lease_seconds=60, now=later + dt.timedelta(seconds=120))
    assert [m.id for m in taken] == [row.id]


def test_permanent_failure_queues_the_bounce_in_the_same_transaction(core) -> None:  # type: ignore[no-untyped-def]
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["gone@x.net"], b"hi", account_id=None))
    core.store.claim_outbound("w1", lease_seconds=60)
    bounce = NewOutbound("", ["ann@example.org"], b"Subject: Undelivered\r\n\r\nsorry")
    assert core.store.finish_outbound(row.id, "w1", "failed", "550 no such user", bounce=bounce)
    queued = core.store.list_outbound()
    assert [(m.sender, recipients_of(m)) for m in queued] == [("", ["ann@example.org"])]
    assert core.store.get_outbound(row.id).last_error == "550 no such user"


def test_retry_release_and_delete(core) -> None:  # type: ignore[no-untyped-def]
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net"], b"hi"))
    core.store.claim_outbound("w1", lease_seconds=60)
    assert core.store.release_outbound(row.id, "w1")
    core.store.claim_outbound("w1", lease_seconds=60)
    core.store.defer_outbound(row.id, "w1", ["a@x.net"], "421", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    core.store.retry_outbound(row.id)
    assert [m.id for m in core.store.claim_outbound("w2", lease_seconds=60)] == [row.id]
    core.store.delete_outbound(row.id)
    with pytest.raises(NotFound):
        core.store.get_outbound(row.id)
    with pytest.raises(NotFound):
        core.store.retry_outbound(row.id)


def test_sent_since_counts_an_accounts_messages_and_their_recipients(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    for _ in range(2):
        core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net"], b"hi", account_id=ann.id))
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net", "b@y.net", "c@z.net"], b"hi",
                                                  account_id=ann.id))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert core.store.sent_since(ann.id, since) == SentCount(messages=3, recipients=5)
    # Delivered recipients leave the row's list, not the count.
    core.store.claim_outbound("w1", lease_seconds=60)
    core.store.defer_outbound(row.id, "w1", ["c@z.net"], "451", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert core.store.sent_since(ann.id, since) == SentCount(messages=3, recipients=5)


def test_the_hourly_recipient_limit_counts_every_recipient_of_a_message(core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.storage import SendingLimitReached

    ann = core.store.create_account("ann@example.org", "", "standard")

    def queue(*recipients: str) -> None:
        core.store.enqueue_outbound(NewOutbound("ann@example.org", list(recipients), b"hi", account_id=ann.id,
                                                hourly_limit=100, hourly_recipient_limit=4))

    queue("a@x.net", "b@x.net", "c@x.net")
    with pytest.raises(SendingLimitReached) as refused:
        queue("d@x.net", "e@x.net")  # 5 > 4: nothing of it is queued
    assert (refused.value.limit, refused.value.unit) == (4, "recipients")
    queue("d@x.net")  # exactly the allowance
    with pytest.raises(SendingLimitReached):
        queue("e@x.net")
    assert len(core.store.list_outbound()) == 2


def test_defer_can_bounce_the_recipients_that_failed_for_good(core) -> None:  # type: ignore[no-untyped-def]
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net", "b@x.net"], b"hi"))
    core.store.claim_outbound("w1", lease_seconds=60)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    bounce = NewOutbound("", ["ann@example.org"], b"Subject: Undelivered\r\n\r\nb@x.net failed")
    assert core.store.defer_outbound(row.id, "w1", ["a@x.net"], "451 busy", later, bounce=bounce)
    assert [(m.sender, recipients_of(m)) for m in core.store.list_outbound()] == [
        ("ann@example.org", ["a@x.net"]), ("", ["ann@example.org"])]


def test_concurrent_workers_claim_each_message_exactly_once(core) -> None:  # type: ignore[no-untyped-def]
    import threading

    ids = {core.store.enqueue_outbound(NewOutbound("ann@example.org", [f"r{n}@x.net"], b"hi")).id for n in range(30)}
    claims: dict[str, list[int]] = {"w1": [], "w2": [], "w3": []}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            for _ in range(20):
                claims[name] += [m.id for m in core.store.claim_outbound(name, lease_seconds=60, limit=3)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    claimed = [i for got in claims.values() for i in got]
    assert sorted(claimed) == sorted(ids)  # every message once, none twice


def test_a_renewed_claim_is_not_taken_over(core) -> None:  # type: ignore[no-untyped-def]
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net"], b"hi"))
    core.store.claim_outbound("w1", lease_seconds=1)
    assert core.store.extend_outbound_claim(row.id, "w1", lease_seconds=600)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert core.store.claim_outbound("w2", lease_seconds=60, now=soon) == []
    assert not core.store.extend_outbound_claim(row.id, "w2", lease_seconds=600)


def test_the_hourly_sending_limit_counts_concurrent_enqueues_one_by_one(core) -> None:  # type: ignore[no-untyped-def]
    # Eight threads queue for one account with an allowance of 3: the count and the insert share a transaction
    # (the account's row locked on PostgreSQL), so exactly 3 are queued.
    import threading

    from kantoor.storage import SendingLimitReached

    account = core.store.create_account("limited@example.org", "x", "standard")
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        try:
            core.store.enqueue_outbound(NewOutbound("limited@example.org", ["a@x.net"], b"hi",
                                                    account_id=account.id, hourly_limit=3))
            outcomes.append("queued")
        except SendingLimitReached:
            outcomes.append("refused")

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["queued"] * 3 + ["refused"] * 5
    assert core.store.sent_since(account.id, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).messages == 3
