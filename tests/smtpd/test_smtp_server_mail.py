"""The one API for mail the server sends (``server_mail`` + ``Store.send_server_mail``) and its
once-per-cause notices, on SQLite and PostgreSQL (ARCHITECTURE.md invariant 2: the database
decides, so two processes never both send a notice)."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage

from kantoor.storage.outbound import recipients_of, server_mail


def _message(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = "ann@localhost"
    message["Subject"] = subject
    message.set_content("Hello from the server.\n")
    return message


def test_server_mail_comes_from_postmaster_with_the_null_sender_rfc5321_section_4_5_5(core) -> None:  # type: ignore[no-untyped-def]
    row = core.store.send_server_mail(server_mail(core.settings, ["ann@localhost"], _message("Notice")))
    assert row.sender == "" and recipients_of(row) == ["ann@localhost"]
    parsed = message_from_bytes(core.store.outbound_body(row))
    assert parsed["From"] == "Mail Delivery System <postmaster@localhost>"
    assert parsed["Auto-Submitted"] == "auto-generated"  # RFC 3834 section 5
    assert parsed["Message-ID"].endswith("@localhost>") and parsed["Date"]
    assert b"\r\n" in core.store.outbound_body(row) and b"\n" not in core.store.outbound_body(row).replace(b"\r\n", b"")


def test_configured_sender_address_and_a_message_with_its_own_from(core) -> None:  # type: ignore[no-untyped-def]
    core.settings.delivery.server_from = "noreply@kantoor.test"
    row = core.store.send_server_mail(server_mail(core.settings, ["ann@localhost"], _message("Configured")))
    assert message_from_bytes(core.store.outbound_body(row))["From"].endswith("<noreply@kantoor.test>")
    own = _message("Own")
    own["From"] = "Calendar <calendar@kantoor.test>"
    row = core.store.send_server_mail(server_mail(core.settings, ["ann@localhost"], own))
    assert message_from_bytes(core.store.outbound_body(row)).get_all("From") == ["Calendar <calendar@kantoor.test>"]


def test_a_notice_is_sent_once_until_cleared(core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.auth import hash_password

    account = core.store.create_account("ann@localhost", hash_password("pw-long-enough-1"), "standard")
    mail = server_mail(core.settings, [account.login], _message("Almost full"))
    assert core.store.mail_usage_for_notice("mail-quota", 90) == []  # empty mailbox, nothing outstanding
    assert core.store.send_notice_once(account.id, "mail-quota", mail) is True
    [(account_id, login, used, capacity, outstanding)] = core.store.mail_usage_for_notice("mail-quota", 90)
    assert (account_id, login, used, outstanding) == (account.id, account.login, 0, True) and capacity > 0
    assert core.store.send_notice_once(account.id, "mail-quota", mail) is False
    assert core.store.send_notice_once(account.id, "other-kind", mail) is True  # each cause on its own
    queued = [m for m in core.store.list_outbound() if recipients_of(m) == [account.login]]
    assert len(queued) == 2
    core.store.clear_notices("mail-quota", [account.id])
    assert core.store.send_notice_once(account.id, "mail-quota", mail) is True
