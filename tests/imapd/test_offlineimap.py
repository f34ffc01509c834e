"""A second real sync client: offlineimap mirrors a couple of hundred realistic messages to a Maildir and back
with local changes (flags, a move, deletions) and new server mail; the next run finds nothing to do."""

from __future__ import annotations

import imaplib
import random
import re
import subprocess

from harness import require_tool
from imapd.imap_corpus import maildir_ids, message_id, realistic_message, server_flags, server_ids, upload

COUNT = 150


def test_offlineimap_round_trip_loses_and_duplicates_nothing(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    offlineimap = require_tool("offlineimap")
    login, password = server.make_user()
    rng = random.Random(11)
    messages = dict(realistic_message(n, rng) for n in range(COUNT))
    upload(server, (login, password), list(messages.values()))
    client = imaplib.IMAP4(server.host, server.ports["imap"], timeout=60)
    client.login(login, password)

    maildir = tmp_path / "mail"
    maildir.mkdir()
    config = tmp_path / "offlineimaprc"
    config.write_text(f"""
[general]
accounts = kantoor
metadata = {tmp_path}/metadata

[Account kantoor]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {maildir}

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {server.ports["imaps"]}
ssl = yes
sslcacertfile = {server.certificate}
remoteuser = {login}
remotepass = {password}
folderfilter = lambda name: name in ("INBOX", "Archive")
""")

    def sync() -> None:
        result = subprocess.run([offlineimap, "-c", str(config), "-o", "-u", "basic"], capture_output=True,
                                text=True, timeout=90)
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "ERROR" not in output, output

    sync()
    inbox = maildir / "INBOX"
    assert sorted(maildir_ids(inbox)) == sorted(messages)

    files = sorted((inbox / "cur").glob("*")) + sorted((inbox / "new").glob("*"))
    flagged, moved, deleted = files[:8], files[8:20], files[20:25]
    flagged_ids = {message_id(p) for p in flagged}
    moved_ids = {message_id(p) for p in moved}
    deleted_ids = {message_id(p) for p in deleted}
    for path in flagged:
        base, _, flags = path.name.partition(":2,")
        path.rename(inbox / "cur" / (base + ":2," + "".join(sorted(set(flags + "F")))))
    for path in moved:
        # A file without its ",U=" part is new to offlineimap: it uploads it (APPENDUID tells it the UID).
        (maildir / "Archive" / "new" / re.sub(r",U=\d+", "", path.name.split(":2,")[0])).write_bytes(
            path.read_bytes())
        path.unlink()
    for path in deleted:
        path.unlink()
    new_id, new_body = realistic_message(COUNT + 1, rng)
    assert client.append("INBOX", None, None, new_body)[0] == "OK"

    sync()
    expected_inbox = set(messages) - moved_ids - deleted_ids | {new_id}
    assert sorted(server_ids(client, "INBOX")) == sorted(expected_inbox)
    assert sorted(server_ids(client, "Archive")) == sorted(moved_ids)
    flags = server_flags(client, "INBOX")
    assert all(b"\\Flagged" in flags[mid] for mid in flagged_ids)
    assert sorted(maildir_ids(inbox)) == sorted(expected_inbox)

    sync()  # nothing left to do: both sides stay as they are
    assert sorted(server_ids(client, "INBOX")) == sorted(expected_inbox)
    assert sorted(server_ids(client, "Archive")) == sorted(moved_ids)
    assert sorted(maildir_ids(inbox)) == sorted(expected_inbox)
    assert sorted(maildir_ids(maildir / "Archive")) == sorted(moved_ids)
    client.logout()
