"""RFC 3501 6.4.4: every SEARCH key, on three messages whose answers are known."""

from __future__ import annotations

import pytest

FIRST = (b"From: =?utf-8?q?J=C3=BCrgen?= <jurgen@example.org>\r\nTo: team@example.org\r\n"
         b"Cc: boss@example.org\r\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
         b"X-Project: kantoor\r\n\r\nshort body\r\n")
SECOND = (b"From: Ann <ann@example.net>\r\nTo: jurgen@example.org\r\nSubject: Lunch\r\n"
          b"Date: Wed, 10 Jan 2024 12:00:00 +0000\r\n\r\n" + b"a much longer body text " * 50 + b"\r\n")
THIRD = b"From: Bob <bob@example.com>\r\nSubject: No date\r\nBcc: hidden@example.org\r\n\r\nthird\r\n"


@pytest.fixture(scope="module")
def mailbox(server, user):  # type: ignore[no-untyped-def]
    """One session on a mailbox holding the three messages, shared by every case (read-only: EXAMINE)."""
    import imaplib

    from imapd.imap_raw import RawSession

    client = imaplib.IMAP4(server.host, server.ports["imap"], timeout=30)
    client.login(*user)
    client.create("SearchKeys")
    client.append("SearchKeys", "(\\Seen \\Answered)", '"01-Jan-2024 10:00:00 +0000"', FIRST)
    client.append("SearchKeys", "(\\Flagged $Work)", '"10-Jan-2024 12:00:00 +0000"', SECOND)
    client.append("SearchKeys", "(\\Deleted \\Draft)", '"20-Jan-2024 08:00:00 +0000"', THIRD)
    client.logout()
    session = RawSession(server)
    session.command(f'LOGIN "{user[0]}" "{user[1]}"')
    session.command("EXAMINE SearchKeys")
    yield session
    session.close()


def _argument(word: str) -> bytes:
    data = word.encode()
    if not word.isascii():
        return b"{%d+}\r\n%s" % (len(data), data)  # RFC 7888 literal for 8-bit strings
    return data


@pytest.mark.parametrize(("criteria", "expected"), [
    (("ALL",), "1 2 3"), (("1,3",), "1 3"), (("2:*",), "2 3"), (("UID", "1:2"), "1 2"),
    (("ANSWERED",), "1"), (("UNANSWERED",), "2 3"), (("DELETED",), "3"), (("UNDELETED",), "1 2"),
    (("DRAFT",), "3"), (("UNDRAFT",), "1 2"), (("FLAGGED",), "2"), (("UNFLAGGED",), "1 3"),
    (("SEEN",), "1"), (("UNSEEN",), "2 3"), (("KEYWORD", "$Work"), "2"), (("UNKEYWORD", "$work"), "1 3"),
    # EXAMINE shows new mail as \Recent without taking it (RFC 3501 2.3.2, 6.3.2); NEW = RECENT UNSEEN.
    (("NEW",), "2 3"), (("RECENT",), "1 2 3"), (("OLD",), ""), (("NOT", "RECENT"), ""),
    (("FROM", "jürgen"), "1"), (("FROM", "example.net"), "2"), (("TO", "jurgen"), "2"),
    (("CC", "boss"), "1"), (("BCC", "hidden"), "3"), (("SUBJECT", "GRÜSSE"), ""), (("SUBJECT", "grüße"), "1"),
    (("HEADER", "X-Project", "kant"), "1"), (("BODY", "longer"), "2"), (("TEXT", "lunch"), "2"),
    (("TEXT", "third"), "3"),
    (("LARGER", "500"), "2"), (("SMALLER", "300"), "1 3"),
    (("BEFORE", "10-Jan-2024"), "1"), (("ON", "10-Jan-2024"), "2"), (("SINCE", "10-Jan-2024"), "2 3"),
    (("SENTBEFORE", "10-Jan-2024"), "1"), (("SENTON", "10-Jan-2024"), "2"), (("SENTSINCE", "2-Jan-2024"), "2"),
    (("NOT", "SEEN"), "2 3"), (("OR", "DRAFT", "FLAGGED"), "2 3"), (("(SEEN", "ANSWERED)"), "1"),
    (("OR", "(SEEN", "FLAGGED)", "DELETED"), "3"), (("NOT", "(OR", "SEEN", "DELETED)"), "2"),
])
def test_every_rfc3501_6_4_4_search_key(mailbox, criteria, expected) -> None:  # type: ignore[no-untyped-def]
    reply = mailbox.command(b"SEARCH CHARSET UTF-8 " + b" ".join(_argument(c) for c in criteria))
    assert reply[-1].split()[1] == b"OK", reply
    assert reply[0] == (b"* SEARCH " + expected.encode()).strip(), criteria
