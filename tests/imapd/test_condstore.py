"""RFC 7162 CONDSTORE: HIGHESTMODSEQ, FETCH MODSEQ / CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ,
STATUS HIGHESTMODSEQ, and MODSEQ in the changes a second session is told about."""

from __future__ import annotations

import re

MESSAGE = b"From: a@example.org\r\nSubject: c\r\n\r\nbody\r\n"


def _select(session, box: str, condstore: bool = True) -> int:  # type: ignore[no-untyped-def]
    reply = session.command(f'SELECT "{box}"' + (" (CONDSTORE)" if condstore else ""))
    assert reply[-1].split()[1] == b"OK", reply
    return int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", b"\n".join(reply)).group(1))


def _fill(session, box: str, count: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(count):
        session.command(f'APPEND "{box}" {{{len(MESSAGE)}+}}'.encode() + b"\r\n" + MESSAGE)


def _modseqs(lines: list[bytes]) -> dict[int, int]:
    found = {}
    for line in lines:
        match = re.match(rb"\* (\d+) FETCH .*MODSEQ \((\d+)\)", line)
        if match:
            found[int(match.group(1))] = int(match.group(2))
    return found


def test_select_condstore_reports_highestmodseq_rfc7162_3_1_2_and_3_1_8(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    assert b"CONDSTORE" in session.command("CAPABILITY")[0]
    empty = _select(session, folder)
    assert empty >= 1
    _fill(session, folder, 2)
    assert _select(session, folder) > empty
    status = session.command(f'STATUS "{folder}" (HIGHESTMODSEQ MESSAGES)')[0]
    assert re.search(rb"\(HIGHESTMODSEQ \d+ MESSAGES 2\)", status)
    assert session.command(f'SELECT "{folder}" (FROBNICATE)')[-1].split()[1] == b"BAD"


def test_fetch_modseq_and_changedsince_rfc7162_3_1_4(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    _fill(session, folder, 3)
    _select(session, folder)
    modseqs = _modseqs(session.command("FETCH 1:* (FLAGS MODSEQ)"))
    assert sorted(modseqs) == [1, 2, 3] and modseqs[1] < modseqs[2] < modseqs[3]
    reply = session.command("STORE 2 +FLAGS.SILENT (\\Seen)")
    # With CONDSTORE on, even .SILENT reports the new MODSEQ (RFC 7162 3.1.3).
    new = _modseqs(reply)[2]
    assert new > modseqs[3] and b"FLAGS" not in reply[0]
    reply = session.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseqs[3]})")
    assert len(reply) == 2 and reply[0].startswith(b"* 2 FETCH (") and b"MODSEQ (%d)" % new in reply[0]
    assert b"UID 2" in reply[0] and b"\\Seen" in reply[0]
    assert session.command(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {new})") [0].split()[1] == b"OK"


def test_store_unchangedsince_reports_modified_rfc7162_3_1_3(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    _fill(session, folder, 3)
    _select(session, folder)
    modseqs = _modseqs(session.command("FETCH 1:3 (MODSEQ)"))
    session.command("STORE 3 +FLAGS (\\Flagged)")
    # The RFC's example: a conditional STORE that loses on a message someone changed meanwhile.
    reply = session.command(f"STORE 1:3 (UNCHANGEDSINCE {modseqs[3]}) +FLAGS (\\Deleted)")
    assert reply[-1].split()[1:3] == [b"OK", b"[MODIFIED"] and reply[-1].split()[3] == b"3]"
    changed = _modseqs(reply)
    assert sorted(changed) == [1, 2]
    assert b"\\Deleted" not in session.command("FETCH 3 (FLAGS)")[0]
    reply = session.command("UID STORE 1:3 (UNCHANGEDSINCE 1) FLAGS (\\Seen)")
    assert b"[MODIFIED 1:3]" in reply[-1] or b"[MODIFIED 1,2,3]" in reply[-1]
    assert session.command("STORE 1 (FROB 1) +FLAGS (\\Seen)")[-1].split()[1] == b"BAD"


def test_search_modseq_rfc7162_3_1_5(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    _fill(session, folder, 3)
    _select(session, folder, condstore=False)
    reply = session.command("STORE 2 FLAGS (\\Answered)")
    changed = int(re.search(rb"MODSEQ \((\d+)\)", reply[0]).group(1)) if b"MODSEQ" in reply[0] else None
    assert changed is None  # CONDSTORE was not enabled yet: no MODSEQ in the reply
    reply = session.command("SEARCH MODSEQ 1")
    highest = int(re.search(rb"\(MODSEQ (\d+)\)", reply[0]).group(1))
    assert reply[0].startswith(b"* SEARCH 1 2 3 (MODSEQ ")
    assert session.command(f"SEARCH MODSEQ {highest}")[0] == b"* SEARCH 2 (MODSEQ %d)" % highest
    assert session.command(f'SEARCH MODSEQ "/flags/\\\\draft" all {highest}')[0].startswith(b"* SEARCH 2 ")
    assert session.command(f"SEARCH MODSEQ {highest + 1}")[0] == b"* SEARCH"


def test_enable_condstore_then_another_sessions_change_carries_modseq_rfc5161_and_rfc7162_3_2(  # type: ignore[no-untyped-def]
        raw, user, folder) -> None:
    watcher, writer = raw(user), raw(user)
    _fill(writer, folder, 1)
    reply = watcher.command("ENABLE CONDSTORE X-UNKNOWN")
    assert reply[0] == b"* ENABLED CONDSTORE" and reply[-1].split()[1] == b"OK"
    _select(watcher, folder, condstore=False)
    _select(writer, folder, condstore=False)
    writer.command("STORE 1 +FLAGS (\\Flagged)")
    reply = watcher.command("NOOP")
    assert re.match(rb"\* 1 FETCH \(FLAGS \(\\Flagged( \\Recent)?\) MODSEQ \(\d+\)\)", reply[0]), reply


def test_qresync_select_reports_vanished_and_changed_rfc7162_3_2_5(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    client, other = raw(user), raw(user)
    _fill(other, folder, 4)
    assert client.command(f'SELECT "{folder}" (QRESYNC (1 1))')[-1].split()[1] == b"BAD"  # not enabled yet
    assert client.command("ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC"
    reply = b"\n".join(client.command(f'SELECT "{folder}"'))
    validity = int(re.search(rb"\[UIDVALIDITY (\d+)\]", reply).group(1))
    known = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", reply).group(1))
    # Meanwhile another session expunges UID 2 and flags UID 3.
    other.command(f'SELECT "{folder}"')
    other.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.command("EXPUNGE")
    other.command("UID STORE 3 +FLAGS.SILENT (\\Flagged)")
    reply = client.command(f'SELECT "{folder}" (QRESYNC ({validity} {known} 1:4))')
    assert reply[0] == b"* OK [CLOSED] previous mailbox closed"
    assert b"* VANISHED (EARLIER) 2" in reply
    changed = [line for line in reply if b" FETCH " in line]
    assert len(changed) == 1 and re.match(rb"\* 2 FETCH \(UID 3 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", changed[0])
    assert reply[-1].split()[1] == b"OK"
    # A stale UIDVALIDITY gets no resync data, just the plain SELECT.
    stale = client.command(f'SELECT "{folder}" (QRESYNC ({validity - 1} {known}))')
    assert not any(b"VANISHED" in line or b"FETCH" in line for line in stale)
    reply = client.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")
    assert reply[0] == b"* VANISHED (EARLIER) 2" and b"UID 3" in reply[1]
    assert client.command("FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].split()[1] == b"BAD"


def test_qresync_turns_expunge_into_vanished_rfc7162_3_2_10(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    client, other = raw(user), raw(user)
    _fill(client, folder, 3)
    client.command("ENABLE QRESYNC")
    client.command(f'SELECT "{folder}"')
    client.command("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    assert client.command("EXPUNGE")[0] == b"* VANISHED 1:2"
    other.command(f'SELECT "{folder}"')
    other.command("MOVE 1 \"Archive\"")
    assert b"* VANISHED 3" in client.command("NOOP")
