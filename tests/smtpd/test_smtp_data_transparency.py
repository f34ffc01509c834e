"""The DATA block as RFC 5321 section 4.5.2 defines it, read in chunks: dot-stuffing undone, the
terminator found wherever the network splits it, and commands pipelined after it kept (RFC 2920)."""

from __future__ import annotations

import socket
import time

from harness import read_smtp_replies as _read_replies


def _session(server, sock: socket.socket) -> None:  # type: ignore[no-untyped-def]
    assert _read_replies(sock, 1)[0].startswith(b"220 ")
    sock.sendall(b"EHLO mx.example.org\r\n")
    assert _read_replies(sock, 1)[0].startswith(b"250 ")


def test_dot_stuffed_lines_arrive_with_one_dot_less_rfc5321_section_4_5_2(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    subject = mail.unique("dots-")
    body = ".first line starts with a dot\r\n.\r\n..two dots\r\nmiddle . dot\r\n.\r\nlast"
    with mail.mx() as client:  # smtplib doubles every leading dot on the wire
        assert client.sendmail("sender@example.org", [login], mail.compose(subject, body)) == {}
    delivered = mail.received(login, password, subject)
    assert delivered.endswith(b"\r\n\r\n" + body.encode() + b"\r\n"), delivered[-200:]


def test_large_message_split_across_many_reads_arrives_byte_for_byte(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    subject = mail.unique("large-")
    lines = [f"line {n:06d} " + "x" * (n % 900) for n in range(600)]  # ~270 KiB, every line length under 1001
    message = mail.compose(subject, "\r\n".join(lines))
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        _session(server, sock)
        sock.sendall(f"MAIL FROM:<sender@example.org>\r\nRCPT TO:<{login}>\r\nDATA\r\n".encode())
        assert [r[:3] for r in _read_replies(sock, 3)] == [b"250", b"250", b"354"]
        wire = message + b".\r\n"
        # Odd-sized writes with pauses: the end-of-data line "\r\n.\r\n" is cut between two of them.
        cut = len(wire) - 3
        for start in range(0, cut, 7001):
            sock.sendall(wire[start:min(start + 7001, cut)])
        time.sleep(0.2)
        sock.sendall(wire[cut:])
        assert _read_replies(sock, 1)[0].startswith(b"250 ")
    assert mail.received(login, password, subject).endswith(message.split(b"\r\n\r\n", 1)[1])


def test_next_transaction_pipelined_behind_the_message_is_not_lost_rfc2920_section_3_1(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    first, second = mail.unique("first-"), mail.unique("second-")
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        _session(server, sock)
        sock.sendall(f"MAIL FROM:<sender@example.org>\r\nRCPT TO:<{login}>\r\nDATA\r\n".encode())
        assert [r[:3] for r in _read_replies(sock, 3)] == [b"250", b"250", b"354"]
        # The end of one message and the whole envelope of the next in one write.
        sock.sendall(mail.compose(first) + f".\r\nMAIL FROM:<sender@example.org>\r\nRCPT TO:<{login}>\r\nDATA\r\n"
                     .encode())
        assert [r[:3] for r in _read_replies(sock, 4)] == [b"250", b"250", b"250", b"354"]
        sock.sendall(mail.compose(second) + b".\r\nQUIT\r\n")
        assert [r[:3] for r in _read_replies(sock, 2)] == [b"250", b"221"]
    assert mail.received(login, password, first)
    assert mail.received(login, password, second)


def test_empty_message_is_accepted_as_sent(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, _ = server.make_user()
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        _session(server, sock)
        sock.sendall(f"MAIL FROM:<sender@example.org>\r\nRCPT TO:<{login}>\r\nDATA\r\n".encode())
        assert [r[:3] for r in _read_replies(sock, 3)] == [b"250", b"250", b"354"]
        sock.sendall(b".\r\nNOOP\r\n")
        assert [r[:3] for r in _read_replies(sock, 2)] == [b"250", b"250"]


def test_bare_cr_deep_in_a_message_read_in_many_pieces_is_refused_rfc5321_section_2_3_8(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    lines = [f"line {n:06d} " + "y" * 200 for n in range(1000)]  # ~210 KiB: more than one read
    lines[900] += "\rhidden"
    message = mail.compose(mail.unique("bare-cr-"), "\r\n".join(lines))
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        _session(server, sock)
        sock.sendall(f"MAIL FROM:<sender@example.org>\r\nRCPT TO:<{login}>\r\nDATA\r\n".encode())
        assert [r[:3] for r in _read_replies(sock, 3)] == [b"250", b"250", b"354"]
        for start in range(0, len(message), 50_000):
            sock.sendall(message[start:start + 50_000])
            time.sleep(0.05)
        sock.sendall(b".\r\nNOOP\r\n")
        replies = _read_replies(sock, 2)
        assert replies[0].startswith(b"554 5.5.2 ") and b"bare CR or LF" in replies[0], replies
        assert replies[1].startswith(b"250 ")
    assert mail.inbox(login, password) == []
