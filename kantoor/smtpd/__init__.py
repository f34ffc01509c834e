"""SMTP: inbound MX and authenticated submission on aiosmtpd, delivering through the Store,
and the outbound queue's delivery worker (MX lookup, aiosmtplib, 8BITMIME down-conversion,
DKIM, DSN reports), plus the mailbox-usage warning task; all server mail goes through the queue."""

from kantoor.smtpd.listener import start

__all__ = ["start"]
