"""RFC 7888 LITERAL+: non-synchronizing literals, also pipelined behind a running command and when refused."""

from __future__ import annotations

MESSAGE = b"From: a@example.org\r\nSubject: lit\r\n\r\nline one\r\nline two\r\n"


def test_literal_plus_is_advertised_and_no_continuation_is_sent_rfc7888_3(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw()
    assert b"LITERAL+" in session.greeting
    login, password = user
    session.send(b"a1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(login), login.encode(), len(password),
                                                          password.encode()))
    assert session.read_until(b"a1")[-1].startswith(b"a1 OK")
    session.send(b'a2 APPEND "%s" (\\Seen) {%d+}\r\n%s\r\n' % (folder.encode(), len(MESSAGE), MESSAGE))
    reply = session.read_until(b"a2")
    assert len(reply) == 1 and b"[APPENDUID" in reply[0]  # no "+ " continuation line before it
    session.command(f'SELECT "{folder}"')
    assert session.command("FETCH 1 (BODY.PEEK[])")[0].endswith(MESSAGE + b")")


def test_pipelined_appends_behind_a_running_command_keep_their_bytes_rfc7888_4(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    session.command(f'SELECT "{folder}"')
    burst = b"p0 NOOP\r\n"  # held while it refreshes in a thread: the APPENDs queue behind it
    for n in range(1, 6):
        body = MESSAGE.replace(b"lit", b"lit %d" % n) + b"\r\n{5}\r\np9 BAD-IF-RUN\r\n"  # looks like commands
        burst += b'p%d APPEND "%s" {%d+}\r\n%s\r\n' % (n, folder.encode(), len(body), body)
    session.send(burst + b"p6 UID SEARCH ALL\r\n")
    lines = session.read_until(b"p6")
    tagged = [line.split()[0] for line in lines if not line.startswith(b"*")]
    assert tagged == [b"p0", b"p1", b"p2", b"p3", b"p4", b"p5", b"p6"], lines
    assert all(b"OK" in line for line in lines if not line.startswith(b"*"))
    assert b"* SEARCH 1 2 3 4 5" in lines
    fetched = session.command("FETCH 3 (BODY.PEEK[])")[0]
    assert b"Subject: lit 3" in fetched and b"p9 BAD-IF-RUN" in fetched


def test_refused_literal_is_read_and_ignored_rfc7888_4(raw, user) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    junk = b"x1 LOGOUT\r\n" * 500  # over Twisted's 4096-octet limit for string literals
    session.send(b"a1 SELECT {%d+}\r\n%s\r\n" % (len(junk), junk))
    reply = session.read_until(b"a1")
    assert reply[-1].split()[1] in (b"BAD", b"NO")
    assert session.command("NOOP")[-1].split()[1] == b"OK"  # still in step: the junk was not run


def test_refused_append_with_literal_plus_is_discarded(policy_server, trusting) -> None:  # type: ignore[no-untyped-def]
    import socket
    import ssl

    login, password = policy_server.make_user("literal@localhost", "standard")
    raw_sock = socket.create_connection((policy_server.host, policy_server.ports["imaps"]), timeout=20)
    context: ssl.SSLContext = trusting(policy_server)
    with context.wrap_socket(raw_sock, server_hostname="localhost") as sock:
        stream = sock.makefile("rb")
        stream.readline()
        sock.sendall(f'a1 LOGIN "{login}" "{password}"\r\n'.encode())
        assert stream.readline().startswith(b"a1 OK")
        big = b"Subject: big\r\n\r\n" + b"a2 LOGOUT\r\n" * 3000  # over max_message_bytes (20000)
        sock.sendall(b"a2 APPEND INBOX {%d+}\r\n%s\r\na3 NOOP\r\n" % (len(big), big))
        line = stream.readline()
        assert line.startswith(b"a2 NO [TOOBIG]"), line
        assert stream.readline().startswith(b"a3 OK")


def test_enable_unselect_namespace_and_id(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    assert session.command("ENABLE")[-1].split()[1] == b"BAD"
    assert session.command("ENABLE X-NOTHING")[0] == b"* ENABLED"
    assert session.command("NAMESPACE")[0] == b'* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared/" "/"))'
    assert session.command('ID ("name" "test")')[0].startswith(b"* ID (")
    session.command(f'SELECT "{folder}"')
    assert session.command("UNSELECT")[-1].split()[1] == b"OK"
    assert session.command("FETCH 1 (FLAGS)")[-1].split()[1] == b"BAD"  # no mailbox selected any more
