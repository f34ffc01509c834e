"""A real sync client: mbsync (Debian isync) mirrors a few hundred realistic messages to a local Maildir and
back, over implicit TLS, with changes on both sides (flags, a move, deletions, new mail); a second and third
run find nothing to do — nothing lost, nothing duplicated (RFC 3501 UIDs, RFC 4315 UIDPLUS, RFC 7888)."""

from __future__ import annotations

import imaplib
import random
import re
import subprocess

from harness import require_tool
from imapd.imap_corpus import maildir_ids, message_id, realistic_message, server_flags, server_ids, upload

COUNT = 200


def test_mbsync_round_trip_loses_and_duplicates_nothing(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mbsync = require_tool("mbsync")
    login, password = server.make_user()
    rng = random.Random(7)
    messages = dict(realistic_message(n, rng) for n in range(COUNT))
    upload(server, (login, password), list(messages.values()))
    client = imaplib.IMAP4(server.host, server.ports["imap"], timeout=60)
    client.login(login, password)
    client.create("Projects/Kantoor")

    maildir = tmp_path / "mail"
    maildir.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(f"""
IMAPAccount kantoor
Host 127.0.0.1
Port {server.ports["imaps"]}
User {login}
Pass {password}
SSLType IMAPS
SystemCertificates no
CertificateFile {server.certificate}
AuthMechs LOGIN
Timeout 20

IMAPStore remote
Account kantoor

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel everything
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")

    def sync() -> str:
        result = subprocess.run([mbsync, "-c", str(config), "-a"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    sync()
    local_inbox = maildir / "INBOX"
    assert sorted(maildir_ids(local_inbox)) == sorted(messages)
    assert (maildir / "Projects" / "Kantoor" / "cur").is_dir() and (maildir / "Archive" / "cur").is_dir()
    by_id = {message_id(p): p.read_bytes() for p in (local_inbox / "cur").glob("*")}
    by_id.update({message_id(p): p.read_bytes() for p in (local_inbox / "new").glob("*")})
    for key, body in messages.items():  # byte for byte, but for line ends and mbsync's own X-TUID header
        local = re.sub(rb"(?m)^X-TUID: .*\n", b"", by_id[key].replace(b"\r\n", b"\n"))
        assert local == body.replace(b"\r\n", b"\n"), key

    # Local changes: flag some, move some to Archive, delete some.
    files = sorted((local_inbox / "cur").glob("*")) + sorted((local_inbox / "new").glob("*"))
    flagged, moved, deleted = files[:10], files[10:25], files[25:30]
    flagged_ids = {message_id(p) for p in flagged}
    moved_ids = {message_id(p) for p in moved}
    deleted_ids = {message_id(p) for p in deleted}
    for path in flagged:
        name = path.name.split(":2,")[0] + ":2," + "".join(sorted(set(path.name.partition(":2,")[2] + "F")))
        path.rename(local_inbox / "cur" / name)
    for path in moved:
        (maildir / "Archive" / "cur" / re.sub(r",U=\d+", "", path.name)).write_bytes(path.read_bytes())
        path.unlink()
    for path in deleted:
        path.unlink()
    # A change on the server side in the meantime: new mail.
    new_id, new_body = realistic_message(COUNT + 1, rng)
    client.append("INBOX", None, None, new_body)

    sync()
    inbox_ids = server_ids(client, "INBOX")
    expected_inbox = set(messages) - moved_ids - deleted_ids | {new_id}
    assert sorted(inbox_ids) == sorted(expected_inbox)  # no loss, no duplicate
    assert sorted(server_ids(client, "Archive")) == sorted(moved_ids)
    flags = server_flags(client, "INBOX")
    assert all(b"\\Flagged" in flags[mid] for mid in flagged_ids)
    assert sorted(maildir_ids(local_inbox)) == sorted(expected_inbox)

    # Nothing left to do: the next runs change nothing on either side.
    for _ in range(2):
        sync()
        assert sorted(server_ids(client, "INBOX")) == sorted(expected_inbox)
        assert sorted(server_ids(client, "Archive")) == sorted(moved_ids)
        assert sorted(maildir_ids(local_inbox)) == sorted(expected_inbox)
        assert sorted(maildir_ids(maildir / "Archive")) == sorted(moved_ids)
    client.logout()
