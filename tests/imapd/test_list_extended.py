"""LIST-EXTENDED (RFC 5258), the SPECIAL-USE selection option (RFC 6154 5.1) and LIST-STATUS (RFC 5819)."""

from __future__ import annotations


def test_special_use_selection_as_thunderbird_sends_it_rfc6154_5_1(raw, user) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    caps = session.command("CAPABILITY")[0]
    assert b" LIST-EXTENDED" in caps and b" LIST-STATUS" in caps and b" SPECIAL-USE" in caps
    reply = session.command('LIST (SPECIAL-USE) "" "*"')
    assert reply[-1].split()[1] == b"OK"
    assert sorted(reply[:-1]) == [
        b'* LIST (\\HasNoChildren \\Archive) "/" "Archive"', b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
        b'* LIST (\\HasNoChildren \\Junk) "/" "Junk"', b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"',
        b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"']


def test_several_patterns_subscribed_and_return_options_rfc5258_3(raw, user) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    reply = session.command('LIST "" ("INBOX" "Se%") RETURN (CHILDREN SUBSCRIBED)')
    assert reply[:-1] == [b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
                          b'* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" "Sent"']
    assert all(b"\\Subscribed" in line for line in session.command('LIST (SUBSCRIBED) "" "*"')[:-1])
    assert session.command('LIST (RECURSIVEMATCH) "" "*"')[-1].split()[1] == b"BAD"
    assert session.command('LIST (NOSUCH) "" "*"')[-1].split()[1] == b"BAD"
    assert session.command('LIST "" "*" RETURN (NOSUCH)')[-1].split()[1] == b"BAD"
    # The RFC 3501 form with a literal pattern still works (RFC 7888 non-synchronizing literal).
    session.send(b'x1 LIST "" {5+}\r\nINBOX\r\n')
    assert session.read_until(b"x1")[0] == b'* LIST (\\HasNoChildren) "/" "INBOX"'


def test_list_status_follows_each_mailbox_rfc5819(raw, fresh_user, message) -> None:  # type: ignore[no-untyped-def]

    session = raw(fresh_user)
    session.send(b'a APPEND INBOX (\\Seen) {%d+}\r\n%s\r\n' % (len(message), message))
    assert session.read_until(b"a")[-1].split()[1] == b"OK"
    session.send(b'b APPEND INBOX {%d+}\r\n%s\r\n' % (len(message), message))
    session.read_until(b"b")
    reply = session.command('LIST "" "IN*" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))')
    assert reply[:-1] == [b'* LIST (\\HasNoChildren) "/" "INBOX"', b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 1 UIDNEXT 3)']
    assert session.command('STATUS INBOX (MESSAGES UNSEEN UIDNEXT)')[0] == \
        b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 1 UIDNEXT 3)'
