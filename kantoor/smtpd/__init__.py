"""SMTP: inbound MX and authenticated submission on aiosmtpd, delivering through the Store,
and the outbound queue's delivery worker (MX lookup, aiosmtplib, DKIM, DSN bounces)."""

from kantoor.smtpd.listener import start

__all__ = ["start"]
