"""The WSGI layer in front of Radicale: paths, size limit, login and the plan's feature gate.

- WSGI hands PATH_INFO over as latin-1-decoded bytes; Radicale expects the real
  (UTF-8) text, as its own server gives it, so the gate re-decodes it.
- Bodies larger than ``limits.max_dav_body_bytes`` are refused before reading.
- HTTP Basic credentials are checked here with ``Authenticator.check`` (which
  remembers recently verified ones, so per-request Basic stays cheap); a
  plan without CalDAV/CardDAV gets 403 with a readable reason. The verified
  account then travels to Radicale's plugins in the request state.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable

from radicale import pathutils, types

from kantoor.davserver.basic_auth import parse_basic_credentials
from kantoor.davserver.caldav.context import DavContext, RequestState, request_state

REALM = "Kantoor calendars and contacts"


class CalDavGate:
    def __init__(self, context: DavContext, radicale_app: types.WSGIApplication) -> None:
        self.context = context
        self.app = radicale_app

    def __call__(self, environ: types.WSGIEnviron, start_response: types.WSGIStartResponse) -> Iterable[bytes]:
        def reply(status: str, message: str, extra: tuple[tuple[str, str], ...] = ()) -> list[bytes]:
            body = (message.rstrip("\n") + "\n").encode("utf-8")
            start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                    ("Content-Length", str(len(body))), *extra])
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

        try:
            path_info = _wsgi_to_text(environ.get("PATH_INFO", ""))
            script_name = _wsgi_to_text(environ.get("SCRIPT_NAME", ""))
        except UnicodeDecodeError:
            return reply("400 Bad Request", "The request path is not valid UTF-8.")
        limit = self.context.settings.limits.max_dav_body_bytes
        too_large = f"Request bodies are limited to {limit} bytes."
        chunked_body = None
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return reply("400 Bad Request", "Invalid Content-Length.")
        if length < 0:
            return reply("400 Bad Request", "Invalid Content-Length.")
        if length > limit:
            return reply("413 Content Too Large", too_large)
        if not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            # Radicale reads exactly Content-Length bytes; a chunked body (already
            # de-chunked by the HTTP server) is read here, within the limit.
            chunked_body = environ["wsgi.input"].read(limit + 1)
            if len(chunked_body) > limit:
                return reply("413 Content Too Large", too_large)

        account = None
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if authorization[:6].lower() == "basic ":
            credentials = parse_basic_credentials(authorization)
            challenge = (("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),)
            if credentials is None:
                return reply("401 Unauthorized", "Malformed Basic credentials.", challenge)
            result = self.context.authenticator.check(credentials[0], credentials[1], environ.get("REMOTE_ADDR"))
            if not result.ok:
                # A worker thread, not the event loop: sleeping here slows guessing down.
                time.sleep(self.context.authenticator.failure_delay)
                if result.reason == "disabled":
                    return reply("403 Forbidden", "This account is not active.")
                if result.reason == "throttled":
                    return reply("401 Unauthorized", "Too many failed logins; try again later.", challenge)
                return reply("401 Unauthorized", "Invalid login or password.", challenge)
            account = result.account
            assert account is not None
            if not self.context.quota.allows(account, "caldav"):
                return reply("403 Forbidden",
                             "Your plan does not include calendar and contact synchronisation (CalDAV/CardDAV). "
                             "Upgrade your plan to use it.")

        if_match = environ.get("HTTP_IF_MATCH", "").strip() or None
        state = RequestState(
            account=account,
            path=pathutils.sanitize_path(path_info),
            if_match=None if if_match == "*" else if_match,
            if_none_match=environ.get("HTTP_IF_NONE_MATCH", "").strip() == "*",
        )
        inner = dict(environ)
        inner["SCRIPT_NAME"] = script_name.rstrip("/")
        inner["PATH_INFO"] = path_info
        if any(f"HTTP_X_FORWARDED_{h}" in environ for h in ("FOR", "HOST", "PROTO", "SERVER")):
            # Behind a reverse proxy Radicale expects the full path and strips the
            # mount point itself (by plain prefix: "/dav" + "/davy@…/" stays right).
            inner["PATH_INFO"] = inner["SCRIPT_NAME"] + path_info
        if chunked_body is not None:
            inner["wsgi.input"] = io.BytesIO(chunked_body)
            inner["CONTENT_LENGTH"] = str(len(chunked_body))
        # A client must not move Radicale's idea of its mount point.
        inner.pop("HTTP_X_SCRIPT_NAME", None)
        with request_state(state):
            # Radicale answers with a finished list of chunks, so every Store call
            # happens inside this block, while the request state is set.
            return list(self.app(inner, start_response))


def _wsgi_to_text(value: str) -> str:
    """PEP 3333 strings carry bytes as latin-1; the bytes are UTF-8."""
    return value.encode("latin-1").decode("utf-8")


