"""IMAP4rev1 frontend on Twisted, entirely on the Store."""

from kantoor.imapd.listener import listen

__all__ = ["listen"]
