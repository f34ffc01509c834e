"""Radicale auth plugin that trusts the gate's login.

The gate (:mod:`kantoor.davserver.caldav.gate`) checks HTTP Basic credentials
with ``Authenticator.check`` and the plan's ``caldav`` feature before Radicale
runs, because only there can it answer 403 with a reason or apply the
throttle's verdict. It leaves the verified account in the request state; this
plugin hands that login to Radicale as an "external login", so Radicale never
sees or compares a password.
"""

from __future__ import annotations

from radicale import auth as radicale_auth
from radicale import config as radicale_config
from radicale import types

from kantoor.davserver.caldav.context import DavContext, current_request


class Auth(radicale_auth.BaseAuth):
    def __init__(self, configuration: radicale_config.Configuration, context: DavContext) -> None:
        super().__init__(configuration)
        self._context = context

    def get_external_login(self, environ: types.WSGIEnviron) -> tuple[()] | tuple[str, str]:
        state = current_request()
        if state.account is None:
            return ()  # anonymous: Radicale answers 401 with a Basic challenge
        return state.account.login, ""

    def _login(self, login: str, password: str) -> str:
        state = current_request()
        return state.account.login if state.account is not None and login == state.account.login else ""
