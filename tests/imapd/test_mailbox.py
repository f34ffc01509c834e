"""RFC 3501 6.3-6.4: SELECT/EXAMINE, APPEND, FETCH, STORE, EXPUNGE, SEARCH, COPY, CREATE/DELETE, NOOP."""

from __future__ import annotations

import imaplib
import re
import time

import pytest


def untagged(client: imaplib.IMAP4, name: str) -> list[bytes]:
    return [line for line in client.untagged_responses.get(name, []) if line is not None]


def test_select_reports_exists_uidvalidity_uidnext_and_flags(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    client.append("INBOX", None, None, message)
    typ, data = client.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    assert int(untagged(client, "UIDVALIDITY")[0]) > 0
    assert untagged(client, "UIDNEXT") == [b"2"]
    assert untagged(client, "RECENT") == [b"1"]  # the first SELECT after delivery (RFC 3501 2.3.2)
    assert b"\\Seen" in untagged(client, "FLAGS")[0]
    assert b"\\*" in untagged(client, "PERMANENTFLAGS")[0]
    assert untagged(client, "READ-WRITE")


def test_examine_is_read_only(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    client.append("INBOX", None, None, message)
    typ, _ = client.select("INBOX", readonly=True)
    assert typ == "OK"
    assert untagged(client, "READ-ONLY")
    typ, data = client.store("1", "+FLAGS", "(\\Flagged)")
    assert typ == "NO"
    # Reading in a read-only mailbox does not set \Seen.
    client.fetch("1", "(BODY[])")
    assert b"\\Seen" not in client.fetch("1", "(FLAGS)")[1][0]


def test_select_of_a_missing_mailbox_is_no(connect, user) -> None:  # type: ignore[no-untyped-def]
    typ, data = connect(user).select("Does/Not/Exist")
    assert typ == "NO" and b"NONEXISTENT" in data[0]


def test_append_then_fetch_from_a_second_session(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    writer = connect(fresh_user)
    date = imaplib.Time2Internaldate(time.mktime((2024, 3, 5, 12, 30, 0, 0, 0, -1)))
    typ, data = writer.append("INBOX", "(\\Flagged $Important)", date, message)
    assert typ == "OK"
    appenduid = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert appenduid and appenduid.group(2) == b"1"

    reader = connect(fresh_user)
    reader.select("INBOX")
    typ, data = reader.fetch("1", "(FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK"
    meta = data[0]
    assert b"UID 1" in meta
    assert b"\\Flagged" in meta and b"$Important" in meta
    assert b"RFC822.SIZE %d" % len(message) in meta
    assert b'INTERNALDATE "05-Mar-2024' in meta
    assert b'"Quarterly report"' in meta
    assert b'(("Alice Example" NIL "alice" "example.org"))' in meta
    assert b'"<report-1@example.org>"' in meta
    assert b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 19 1' in meta
    assert b'"ALTERNATIVE" ("BOUNDARY" "BOUND")' in meta

    typ, data = reader.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == message
    typ, data = reader.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
    assert data[0][1] == b"From: Alice Example <alice@example.org>\r\nSubject: Quarterly report\r\n\r\n"
    typ, data = reader.fetch("1", "(BODY.PEEK[1])")
    assert data[0][1] == b"The numbers are up."
    typ, data = reader.fetch("1", "(BODY.PEEK[2.MIME])")
    assert data[0][1] == b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    typ, data = reader.fetch("1", "(BODY.PEEK[]<6.5>)")
    assert data[0][0].endswith(b"BODY[]<6> {5}") and data[0][1] == b"Alice"
    typ, data = reader.uid("FETCH", "1", "(RFC822.HEADER)")
    assert data[0][1].startswith(b"From: Alice") and data[0][1].endswith(b"\r\n\r\n")
    typ, data = reader.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]  # every read above was a PEEK or RFC822.HEADER


def test_fetch_body_sets_seen_and_reports_it(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    client.append("INBOX", None, None, message)
    client.select("INBOX")
    typ, data = client.fetch("1", "(RFC822)")
    assert data[0][1] == message
    assert b"\\Seen" in b"".join(part if isinstance(part, bytes) else part[0] for part in data)
    assert b"\\Seen" in client.fetch("1", "(FLAGS)")[1][0]


def test_store_flags_and_expunge(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    for _ in range(3):
        client.append("INBOX", None, None, message)
    client.select("INBOX")
    typ, data = client.store("2", "+FLAGS", "(\\Deleted \\Answered)")
    assert typ == "OK" and b"\\Deleted" in data[0] and b"\\Answered" in data[0]
    typ, data = client.store("2", "-FLAGS", "(\\Answered)")
    assert b"\\Answered" not in data[0]
    typ, data = client.uid("STORE", "3", "FLAGS.SILENT", "(\\Draft)")
    assert typ == "OK" and data == [None]
    typ, data = client.expunge()
    assert typ == "OK" and data == [b"2"]
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert [re.search(rb"UID (\d+)", d).group(1) for d in data] == [b"1", b"3"]
    assert b"\\Draft" in data[1]
    other = connect(fresh_user)
    assert other.select("INBOX")[1] == [b"2"]


def test_close_expunges_silently(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    client.append("INBOX", "(\\Deleted)", None, message)
    client.append("INBOX", None, None, message)
    client.select("INBOX")
    assert client.close()[0] == "OK"
    assert client.select("INBOX")[1] == [b"1"]


def test_noop_reports_messages_from_other_sessions(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    watcher = connect(fresh_user)
    watcher.select("INBOX")
    writer = connect(fresh_user)
    writer.append("INBOX", None, None, message)
    writer.append("INBOX", None, None, message)
    writer.select("INBOX")
    writer.store("1", "+FLAGS", "(\\Flagged)")
    watcher.noop()
    assert untagged(watcher, "EXISTS")[-1] == b"2"
    writer.store("1", "+FLAGS", "(\\Deleted)")
    writer.expunge()
    watcher.noop()
    assert untagged(watcher, "EXPUNGE") == [b"1"]


def test_search(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    client.append("INBOX", "(\\Seen)", None, message)
    client.append("INBOX", None, None, message.replace(b"Quarterly report", b"Lunch").replace(b"up", b"down"))
    client.select("INBOX")
    assert client.search(None, "ALL")[1] == [b"1 2"]
    assert client.search(None, "UNSEEN")[1] == [b"2"]
    assert client.search(None, "SUBJECT", '"quarterly"')[1] == [b"1"]
    assert client.search(None, "FROM", "alice")[1] == [b"1 2"]
    assert client.search(None, "BODY", "down")[1] == [b"2"]
    assert client.search(None, "OR", "SEEN", "SUBJECT", "lunch")[1] == [b"1 2"]
    assert client.search(None, "SENTSINCE", "1-Jan-2024", "NOT", "SEEN")[1] == [b"2"]
    assert client.uid("SEARCH", None, "UID", "2:*")[1] == [b"2"]
    assert client.search(None, "SUBJECT", "nothing-like-this")[1] == [b""]
    with pytest.raises(imaplib.IMAP4.error, match="unknown search key"):
        client.search(None, "FROBNICATE")


def test_search_with_a_literal_utf8_string(server, fresh_user) -> None:  # type: ignore[no-untyped-def]
    from imapclient import IMAPClient

    with IMAPClient(server.host, port=server.ports["imap"], ssl=False, timeout=30) as client:
        client.login(*fresh_user)
        client.append("INBOX", b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n\r\nHallo\r\n")
        client.append("INBOX", b"Subject: other\r\n\r\nHallo\r\n")
        client.select_folder("INBOX")
        # imapclient sends non-ASCII criteria as literals, with UID SEARCH.
        assert client.search(["SUBJECT", "köln"], charset="UTF-8") == [1]
        assert client.search(["NOT", "SUBJECT", "grüße"], charset="UTF-8") == [2]
        assert client.noop()[0] == b"NOOP completed"


def test_create_list_delete_mailbox(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    assert client.create("Projects/2024")[0] == "OK"
    typ, data = client.create("Projects/2024")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    listing = b"\n".join(client.list('""', "Projects*")[1])
    assert b'(\\HasChildren) "/" "Projects"' in listing
    assert b'(\\HasNoChildren) "/" "Projects/2024"' in listing
    assert client.list('""', "%")[1].count(b'(\\HasNoChildren) "/" "Projects/2024"') == 0
    client.append("Projects/2024", None, None, message)
    assert client.status("Projects/2024", "(MESSAGES UIDNEXT UNSEEN)")[1] == [
        b'"Projects/2024" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)']
    assert client.status("Nowhere", "(MESSAGES)")[0] == "NO"
    assert client.delete("Projects")[0] == "OK"
    assert b"Projects" not in b"\n".join(client.list()[1])
    typ, data = client.delete("INBOX")
    assert typ == "NO"


def test_copy_gives_copyuid(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    client.append("INBOX", "(\\Flagged)", None, message)
    client.select("INBOX")
    typ, data = client.copy("1", "Archive")
    assert typ == "OK" and re.search(rb"\[COPYUID \d+ 1 1\]", data[0])
    client.select("Archive")
    typ, data = client.fetch("1", "(FLAGS BODY.PEEK[])")
    assert b"\\Flagged" in data[0][0] and data[0][1] == message
    typ, data = client.copy("1", "Nowhere")
    assert typ == "NO" and b"TRYCREATE" in data[0]


def test_append_to_a_missing_mailbox_asks_to_create_it(connect, user, message) -> None:  # type: ignore[no-untyped-def]
    typ, data = connect(user).append("Nowhere", None, None, message)
    assert typ == "NO" and b"[TRYCREATE]" in data[0]


def test_imapclient_session(server, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    from imapclient import IMAPClient

    with IMAPClient(server.host, port=server.ports["imap"], ssl=False, timeout=30) as client:
        client.login(*fresh_user)
        folders = {name: flags for flags, _delim, name in client.list_folders()}
        assert b"\\Sent" in folders["Sent"]
        assert client.find_special_folder(b"\\Trash") == "Trash"
        client.append("INBOX", message, flags=[b"\\Seen"])
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 1 and info[b"UIDNEXT"] == 2
        uids = client.search(["SUBJECT", "Quarterly"])
        assert uids == [1]
        fetched = client.fetch(uids, ["ENVELOPE", "FLAGS", "BODY.PEEK[]", "RFC822.SIZE"])[1]
        assert fetched[b"ENVELOPE"].subject == b"Quarterly report"
        assert fetched[b"BODY[]"] == message
        assert fetched[b"RFC822.SIZE"] == len(message)
        client.add_flags(uids, [b"\\Flagged"])
        assert b"\\Flagged" in client.get_flags(uids)[1]
        client.delete_messages(uids)
        client.expunge()
        assert client.search("ALL") == []
        assert client.namespace().personal[0][0] == ""


def test_idle_reports_a_message_appended_by_another_session(server, fresh_user, message, connect) -> None:  # type: ignore[no-untyped-def]
    from imapclient import IMAPClient

    with IMAPClient(server.host, port=server.ports["imap"], ssl=False, timeout=30) as watcher:
        watcher.login(*fresh_user)
        watcher.select_folder("INBOX")
        watcher.idle()
        connect(fresh_user).append("INBOX", None, None, message)
        responses = watcher.idle_check(timeout=10)
        watcher.idle_done()
        assert (1, b"EXISTS") in responses
