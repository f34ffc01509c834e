"""\\Recent (RFC 3501 2.3.2): the first session to SELECT a mailbox after a message arrives sees it \\Recent,
no other session does; EXAMINE (6.3.2) shows it without taking it; SEARCH RECENT/NEW/OLD (6.4.4) follow."""

from __future__ import annotations


def _untagged(client, name):  # type: ignore[no-untyped-def]
    return [line for line in client.untagged_responses.get(name, []) if line is not None]


def test_the_first_select_takes_recent_and_examine_does_not_rfc3501_2_3_2(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    writer = connect(fresh_user)
    writer.append("INBOX", None, None, message)
    examiner = connect(fresh_user)
    examiner.select("INBOX", readonly=True)
    assert _untagged(examiner, "RECENT") == [b"1"]  # shown, not taken (RFC 3501 6.3.2)
    first, second = connect(fresh_user), connect(fresh_user)
    first.select("INBOX")
    assert _untagged(first, "RECENT") == [b"1"]
    assert b"\\Recent" in first.fetch("1", "(FLAGS)")[1][0]
    second.select("INBOX")
    assert _untagged(second, "RECENT") == [b"0"]
    assert b"\\Recent" not in second.fetch("1", "(FLAGS)")[1][0]
    assert first.search(None, "RECENT")[1] == [b"1"] and second.search(None, "RECENT")[1] == [b""]
    assert first.search(None, "NEW")[1] == [b"1"] and second.search(None, "OLD")[1] == [b"1"]

    # A message arriving while both are selected is recent for the one that hears of it first.
    writer.append("INBOX", None, None, message)
    second.noop()
    assert _untagged(second, "EXISTS")[-1] == b"2" and _untagged(second, "RECENT")[-1] == b"1"
    first.noop()
    assert _untagged(first, "EXISTS")[-1] == b"2" and _untagged(first, "RECENT")[-1] == b"1"
    assert second.search(None, "RECENT")[1] == [b"2"] and first.search(None, "RECENT")[1] == [b"1"]
    typ, data = writer.status("INBOX", "(RECENT MESSAGES)")
    assert data == [b'"INBOX" (RECENT 0 MESSAGES 2)'] or data == [b"INBOX (RECENT 0 MESSAGES 2)"]
