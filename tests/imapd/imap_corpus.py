"""Realistic mail for the sync-client tests (mbsync, offlineimap), and helpers to compare both sides."""

from __future__ import annotations

import base64
import datetime as dt
import imaplib
import random
import re
import socket
from email.utils import format_datetime
from pathlib import Path

BASE_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
NAMES = ["Jürgen Müller", "Zoë Ångström", "Łukasz Żółć", "Renée Dubois", "Ana María Núñez", "Plain Person"]
SUBJECTS = ["Offerte voor €1.200", "Réunion demain à 10h", "Quarterly numbers", "Grüße aus Köln",
            "日本語の件名", "Re: Fwd: the usual"]


def _encoded(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def realistic_message(n: int, rng: random.Random) -> tuple[str, bytes]:
    """Multipart mail with encoded non-ASCII headers, 8-bit text, an HTML part and sometimes attachments."""
    message_id = f"<m{n}.{rng.getrandbits(40):x}@example.org>"
    text = f"Hallo, dit is bericht {n}. Ça va? Größe: {rng.randint(1, 999)}\r\n" * rng.randint(1, 30)
    parts = [
        "Content-Type: multipart/alternative; boundary=alt\r\n\r\n"
        f"--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"
        f"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"<p>{text}</p>\r\n--alt--\r\n"]
    if n % 4 == 0:
        blob = base64.encodebytes(rng.randbytes(rng.randint(500, 12_000))).decode().replace("\n", "\r\n")
        parts.append(f"Content-Type: application/octet-stream; name=bijlage-{n}.bin\r\n"
                     f"Content-Disposition: attachment; filename=bijlage-{n}.bin\r\n"
                     f"Content-Transfer-Encoding: base64\r\n\r\n{blob}")
    if n % 9 == 0:
        parts.append("Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Disposition: attachment; filename*=utf-8''notities%20%C3%A9.txt\r\n\r\n"
                     "Naïve café résumé\r\n")
    body = "".join(f"--mixed\r\n{part}" for part in parts) + "--mixed--\r\n"
    headers = (f"From: {_encoded(rng.choice(NAMES))} <sender{n}@example.org>\r\n"
               f"To: {_encoded(rng.choice(NAMES))} <rcpt@example.net>\r\n"
               f"Subject: {_encoded(rng.choice(SUBJECTS))} #{n}\r\n"
               f"Date: {format_datetime(BASE_DATE + dt.timedelta(hours=n))}\r\n"
               f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
               "Content-Type: multipart/mixed; boundary=mixed\r\n\r\n")
    return message_id, (headers + body).encode()


def message_id(path: Path) -> str:
    match = re.search(rb"^Message-ID:\s*(<[^>]+>)", path.read_bytes(), re.MULTILINE | re.IGNORECASE)
    assert match, path
    return match.group(1).decode()


def maildir_ids(folder: Path) -> list[str]:
    return [message_id(path) for sub in ("cur", "new") for path in sorted((folder / sub).glob("*"))]


def server_ids(client: imaplib.IMAP4, box: str) -> list[str]:
    typ, _ = client.select(f'"{box}"')
    assert typ == "OK"
    typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    if data == [None]:
        return []
    return [re.search(rb"<[^>]+>", part[1]).group(0).decode() for part in data if isinstance(part, tuple)]


def server_flags(client: imaplib.IMAP4, box: str) -> dict[str, bytes]:
    client.select(f'"{box}"')
    typ, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out = {}
    for part in data:
        if isinstance(part, tuple):
            out[re.search(rb"<[^>]+>", part[1]).group(0).decode()] = part[0]
    return out


def upload(server, credentials: tuple[str, str], bodies: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Pipelined APPENDs with non-synchronizing literals (RFC 7888): one round trip for the lot."""
    with socket.create_connection((server.host, server.ports["imap"]), timeout=60) as sock:
        stream = sock.makefile("rb")
        stream.readline()
        sock.sendall(f'l LOGIN "{credentials[0]}" "{credentials[1]}"\r\n'.encode())
        assert stream.readline().startswith(b"l OK")
        sock.sendall(b"".join(b"a%d APPEND INBOX (%s) {%d+}\r\n%s\r\n" % (
            n, b"\\Seen" if n % 3 == 0 else b"", len(body), body) for n, body in enumerate(bodies)))
        done = 0
        while done < len(bodies):
            line = stream.readline()
            assert line and not line.startswith((b"* BAD", b"+")), line
            if line.startswith(b"a"):
                assert b" OK [APPENDUID " in line, line
                done += 1
