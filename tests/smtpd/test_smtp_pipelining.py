"""PIPELINING (RFC 2920): a batch of commands in one write gets every reply, in order."""

from __future__ import annotations

import socket

from harness import read_smtp_replies as _read_replies


def test_ehlo_advertises_pipelining_rfc2920_section_3(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        assert client.has_extn("pipelining")


def test_pipelined_mail_rcpt_rcpt_data_gets_replies_in_order_rfc2920_section_3_1(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    subject = mail.unique("pipelined-")
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        assert _read_replies(sock, 1)[0].startswith(b"220 ")
        sock.sendall(b"EHLO mx.example.org\r\n")
        assert _read_replies(sock, 1)[0].startswith(b"250 ")
        # One write: the envelope, an unknown recipient in the middle, then DATA.
        sock.sendall(f"MAIL FROM:<sender@example.org>\r\nRCPT TO:<{ann}>\r\nRCPT TO:<nobody-x@localhost>\r\n"
                     f"RCPT TO:<{bob}>\r\nDATA\r\n".encode())
        replies = _read_replies(sock, 5)
        assert [r[:3] for r in replies] == [b"250", b"250", b"550", b"250", b"354"]
        assert replies[2].startswith(b"550 5.1.1")
        # The message and the commands after it, in one write again.
        sock.sendall(mail.compose(subject) + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        replies = _read_replies(sock, 4)
        assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"221"]
    assert mail.received(ann, ann_pw, subject)
    assert mail.received(bob, bob_pw, subject)


def test_pipelined_batch_without_a_valid_recipient_fails_data_rfc2920_section_3_1(server, mail) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        _read_replies(sock, 1)
        sock.sendall(b"EHLO mx.example.org\r\n")
        _read_replies(sock, 1)
        sock.sendall(b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<nobody-y@localhost>\r\nDATA\r\n")
        replies = _read_replies(sock, 3)
        assert [r[:3] for r in replies] == [b"250", b"550", b"503"]


def test_replies_to_a_pipelined_batch_come_in_one_write_rfc2920_section_3_1(server, mail) -> None:  # type: ignore[no-untyped-def]
    # RFC 2920 lets the server hold replies while more commands of the batch are waiting; one write
    # (so one recv on loopback) instead of one per command. DATA's 354 still ends the batch.
    ann, _ = server.make_user()
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        _read_replies(sock, 1)
        sock.sendall(b"EHLO mx.example.org\r\n")
        _read_replies(sock, 1)
        sock.sendall(f"MAIL FROM:<sender@example.org>\r\nRCPT TO:<{ann}>\r\nRCPT TO:<nobody-z@localhost>\r\n"
                     f"NOOP\r\nDATA\r\n".encode())
        first = sock.recv(65536)
        assert [line[:3] for line in first.split(b"\r\n") if line] == [b"250", b"250", b"550", b"250", b"354"], first
        sock.sendall(b".\r\nQUIT\r\n")
        assert [r[:3] for r in _read_replies(sock, 2)] == [b"250", b"221"]


def test_reply_is_not_held_when_the_next_command_is_incomplete_rfc2920_section_3_1(server, mail) -> None:  # type: ignore[no-untyped-def]
    # Half a command behind a complete one: the complete one is answered now, not when the rest comes.
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        _read_replies(sock, 1)
        sock.sendall(b"EHLO mx.example.org\r\n")
        _read_replies(sock, 1)
        sock.sendall(b"NOOP\r\nNO")
        assert _read_replies(sock, 1)[0].startswith(b"250 ")
        sock.sendall(b"OP\r\nQUIT\r\n")
        assert [r[:3] for r in _read_replies(sock, 2)] == [b"250", b"221"]
