"""FETCH of FLAGS, ENVELOPE, BODYSTRUCTURE, BODY, RFC822.SIZE, INTERNALDATE and UID (RFC 3501 6.4.5, 7.4.2)
is answered from what the Store kept at delivery: it works with the message file gone."""

from __future__ import annotations

import re

BIG = (b"From: Ann <ann@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: Big\r\n"
       b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + b"line of text\r\n" * 10000)  # 140 KB: a blob file


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
        assert re.search(rb'BODYSTRUCTURE \("TEXT" "PLAIN" \("CHARSET" "us-ascii"\) NIL NIL "7BIT" \d+ 10000 ', line)
        assert re.search(rb'BODY \("TEXT" "PLAIN" \("CHARSET" "us-ascii"\) NIL NIL "7BIT" \d+ 10000\)', line)
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


def test_whole_message_fetches_are_byte_exact_inline_or_in_a_blob_rfc3501_6_4_5(connect, fresh_user) -> None:  # type: ignore[no-untyped-def]
    """BODY[], BODY.PEEK[]<partial> and RFC822 with row items, for bodies kept inline and in blob files, in one
    query with the rows (a few messages) and batch by batch (more than a batch of messages)."""
    client = connect(fresh_user)
    bodies = [b"Subject: m%d\r\n\r\n" % n + bytes([97 + n % 26]) * (200, 30_000, 100_000)[n % 3] + b"\r\n"
              for n in range(300)]  # 200 B (inline), 30 KB (inline or a file, by the limit), 100 KB (blob files)
    for n, body in enumerate(bodies):
        assert client.append("INBOX", "(\\Flagged)" if n % 2 else None, None, body)[0] == "OK"
    client.select("INBOX")
    typ, data = client.uid("FETCH", "3,1,5:6", "(FLAGS BODY.PEEK[] RFC822.SIZE BODY.PEEK[]<4.10>)")
    assert typ == "OK"
    heads = [item[0] for item in data if isinstance(item, tuple) and b"BODY[] {" in item[0]]
    literals = [item[1] for item in data if isinstance(item, tuple)]
    assert literals == [x for n in (1, 3, 5, 6) for x in (bodies[n - 1], bodies[n - 1][4:14])]
    assert [bool(re.search(rb"FLAGS \([^)]*\\Flagged", head)) for head in heads] == [False, False, False, True]
    partial_heads = [item[0] for item in data if isinstance(item, tuple) and item[0].endswith(b"BODY[]<4> {10}")]
    assert all(b"RFC822.SIZE %d" % len(bodies[n - 1]) in head  # between the two literals
               for n, head in zip((1, 3, 5, 6), partial_heads, strict=True))
    typ, data = client.fetch("2", "(RFC822)")  # not PEEK: sets \Seen and says so
    assert data[0][1] == bodies[1] and b"\\Seen" in b"".join(x if isinstance(x, bytes) else x[0] for x in data)
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK" and [item[1] for item in data if isinstance(item, tuple)] == bodies


def test_a_metadata_fetch_of_a_large_mailbox_is_streamed_whole_and_in_order_rfc3501_6_4_5(  # type: ignore[no-untyped-def]
        server, connect, fresh_user) -> None:
    """FETCH 1:* of more messages than one batch is read and written batch by batch: every message answered
    once, in sequence order, with its own flags and envelope, the tagged OK last; CHANGEDSINCE (RFC 7162
    3.1.4.1) still filters every batch."""
    from kantoor.imapd.commands.fetch import METADATA_BATCH, METADATA_FIRST_BATCH

    count = METADATA_FIRST_BATCH + METADATA_BATCH + 150  # three batches
    store = server.core().store
    owner = store.get_account(fresh_user[0]).principal_id
    inbox = store.mailbox(owner, "INBOX")
    for n in range(count):
        store.deliver_message(inbox.id, b"Subject: number %d\r\n\r\nbody\r\n" % n, owner,
                              flags=["\\Flagged"] if n % 7 == 0 else [])
    client = connect(fresh_user)
    assert client.select("INBOX") == ("OK", [b"%d" % count])
    typ, data = client.fetch("1:*", "(UID FLAGS ENVELOPE)")
    assert typ == "OK" and len(data) == count
    for n, line in enumerate(data):
        assert line.startswith(b"%d (UID %d FLAGS (" % (n + 1, n + 1)), line
        assert (b"\\Flagged" in line) == (n % 7 == 0)
        assert b'"number %d"' % n in line
    typ, data = client.fetch("1:*", "(FLAGS) (CHANGEDSINCE 1)")  # every message but the first (modseq 1)
    assert typ == "OK" and len(data) == count - 1 and data[0].startswith(b"2 (")
    highest = max(int(re.search(rb"MODSEQ \((\d+)\)", line).group(1)) for line in data)
    assert client.uid("STORE", f"3,{count - 1}", "+FLAGS.SILENT", "(\\Answered)")[0] == "OK"
    typ, data = client.fetch("1:*", f"(FLAGS) (CHANGEDSINCE {highest})")
    assert typ == "OK" and [line.split(b" ", 1)[0] for line in data] == [b"3", b"%d" % (count - 1)]


def test_each_cached_item_alone_or_together_comes_from_its_own_column_rfc3501_7_4_2(  # type: ignore[no-untyped-def]
        connect, fresh_user) -> None:
    """Only the ENVELOPE / BODYSTRUCTURE / BODY forms a FETCH names are read: each must still be its own."""
    client = connect(fresh_user)
    assert client.append("INBOX", None, None, BIG)[0] == "OK"
    client.select("INBOX")
    envelope = rb'ENVELOPE \("Mon, 01 Jan 2024 10:00:00 \+0000" "Big"'
    structure = rb'BODYSTRUCTURE \("TEXT" "PLAIN" \("CHARSET" "us-ascii"\) NIL NIL "7BIT" \d+ 10000 '
    body = rb'BODY \("TEXT" "PLAIN" \("CHARSET" "us-ascii"\) NIL NIL "7BIT" \d+ 10000\)'
    for items, expected in (("(BODYSTRUCTURE)", [structure]), ("(BODY)", [body]), ("(ENVELOPE)", [envelope]),
                            ("(BODY ENVELOPE)", [body, envelope]), ("(FLAGS BODYSTRUCTURE BODY)", [structure, body])):
        typ, data = client.fetch("1", items)
        assert typ == "OK"
        for pattern in expected:
            assert re.search(pattern, data[0]), (items, data[0])
        assert len(re.findall(rb"(?:ENVELOPE|BODYSTRUCTURE|BODY) \(", data[0])) == len(expected), (items, data[0])
