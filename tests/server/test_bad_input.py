"""ARCHITECTURE invariant 4 at the listener level: garbage gets a protocol error, never a crash."""

from __future__ import annotations

import imaplib
import smtplib
import socket


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        piece = sock.recv(1)
        if not piece:
            break
        data += piece
    return data


def test_imap_garbage_line_gets_bad_and_session_continues(server) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection((server.host, server.ports["imap"]), timeout=10) as sock:
        assert _read_line(sock).startswith(b"* OK")
        sock.sendall(b"\x00\xff garbage \x01 (((\r\n")
        reply = _read_line(sock)
        assert b"BAD" in reply, reply
        sock.sendall(b"a1 NOOP\r\n")
        assert _read_line(sock).startswith(b"a1 OK")
        sock.sendall(b"a2 FROBNICATE now\r\n")
        assert _read_line(sock).startswith(b"a2 BAD")
        sock.sendall(b"a3 LOGOUT\r\n")
    # The listener still serves new sessions.
    with imaplib.IMAP4(server.host, server.ports["imap"], timeout=10) as imap:
        imap.login(server.admin_login, server.admin_password)


def test_smtp_garbage_line_gets_error_and_session_continues(server) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=10) as sock:
        assert _read_line(sock).startswith(b"220")
        sock.sendall(b"\x01GARBAGE\xff (((\r\n")
        assert _read_line(sock)[:1] == b"5"
        sock.sendall(b"DATA\r\n")  # out of sequence
        assert _read_line(sock).startswith(b"503")
        sock.sendall(b"HELO client.example.net\r\n")
        assert _read_line(sock).startswith(b"250")
        sock.sendall(b"NOOP\r\n")
        assert _read_line(sock).startswith(b"250")
        sock.sendall(b"QUIT\r\n")
    with smtplib.SMTP(server.host, server.ports["smtp"], timeout=10) as smtp:
        assert smtp.ehlo()[0] == 250
