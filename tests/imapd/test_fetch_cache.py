"""FETCH of FLAGS, ENVELOPE, BODYSTRUCTURE, BODY, RFC822.SIZE, INTERNALDATE and UID (RFC 3501 6.4.5, 7.4.2)
is answered from what the Store kept at delivery: it works with the message file gone."""

from __future__ import annotations

import re

BIG = (b"From: Ann <ann@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: Big\r\n"
       b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + b"line of text\r\n" * 3000)


def test_metadata_fetch_never_opens_the_message_rfc3501_7_4_2(server, connect, fresh_user) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    assert client.append("INBOX", "(\\Flagged)", None, BIG)[0] == "OK"
    store = server.core().store
    inbox = store.mailbox(store.get_account(fresh_user[0]).principal_id, "INBOX")
    [item] = store.list_messages(inbox.id)
    path = store.blobs.path(item.blob_sha256)
    saved = path.read_bytes()
    path.unlink()
    try:
        client.select("INBOX")
        typ, data = client.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE BODY)")
        assert typ == "OK"
        line = data[0]
        assert b"FLAGS (\\Flagged \\Recent)" in line and b"RFC822.SIZE %d" % len(BIG) in line
        assert b'ENVELOPE ("Mon, 01 Jan 2024 10:00:00 +0000" "Big"' in line
        assert re.search(rb'BODYSTRUCTURE \("TEXT" "PLAIN" \("CHARSET" "us-ascii"\) NIL NIL "7BIT" \d+ 3000 ', line)
        assert re.search(rb'BODY \("TEXT" "PLAIN" \("CHARSET" "us-ascii"\) NIL NIL "7BIT" \d+ 3000\)', line)
        assert b'INTERNALDATE "' in line and b"UID 1" in line
    finally:
        path.write_bytes(saved)
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: Big\r\n\r\n"


def test_a_fetch_of_many_bodies_comes_whole_and_in_order_rfc3501_6_4_5(connect, fresh_user) -> None:  # type: ignore[no-untyped-def]
    """Bodies are read and written in batches (about a MiB each) behind the socket's flow control."""
    client = connect(fresh_user)
    bodies = [b"Subject: part %d\r\n\r\n" % n + bytes([65 + n]) * (150_000 + n) + b"\r\n" for n in range(14)]
    for body in bodies:
        assert client.append("INBOX", None, None, body)[0] == "OK"
    client.select("INBOX")
    typ, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[] RFC822.SIZE)")
    assert typ == "OK"
    fetched = [item for item in data if isinstance(item, tuple)]
    assert [part[1] for part in fetched] == bodies
    assert all(b"RFC822.SIZE %d" % len(body) in part[0] + data[data.index(part) + 1]
               for part, body in zip(fetched, bodies, strict=True))
    assert b"\\Seen" not in client.fetch("1", "(FLAGS)")[1][0]  # PEEK
