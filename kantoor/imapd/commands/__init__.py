"""IMAP commands grouped by what they do, as mixins of :class:`kantoor.imapd.protocol.KantoorIMAPServer`.

Twisted's IMAP4Server dispatches ``<state>_<COMMAND>`` tuples (handler, argument
parsers…); each mixin defines the handlers and tuples of its commands. They rely
on the server's helpers: ``self.context`` (settings, Store, …), ``self._run``
(blocking work in a thread, errors mapped to replies) and ``self._refuse``.
"""
