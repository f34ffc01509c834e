"""SMTP: inbound MX and authenticated submission on aiosmtpd, delivering through the Store."""

from kantoor.smtpd.listener import start

__all__ = ["start"]
