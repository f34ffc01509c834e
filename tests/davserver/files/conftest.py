"""Fixtures for the drive tests: the real ``server`` fixture (``kantoor serve``) driven over HTTP."""

from __future__ import annotations

import itertools
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
from harness import Reply, http_request

_counter = itertools.count(1)
DAV = "{DAV:}"


def multistatus(body: bytes) -> dict[str, dict[str, ET.Element]]:
    """href (unquoted) → {property tag: element} for the 200 propstats of a 207 body."""
    root = ET.fromstring(body)
    assert root.tag == DAV + "multistatus"
    out: dict[str, dict[str, ET.Element]] = {}
    for response in root.findall(DAV + "response"):
        href = unquote(response.findtext(DAV + "href") or "")
        props: dict[str, ET.Element] = {}
        for propstat in response.findall(DAV + "propstat"):
            if " 200 " not in (propstat.findtext(DAV + "status") or ""):
                continue
            prop_el = propstat.find(DAV + "prop")
            for prop in prop_el if prop_el is not None else []:
                props[prop.tag] = prop
        out[href] = props
    return out


@dataclass
class Drive:
    host: str
    port: int
    make_user: Callable[..., tuple[str, str]]

    def request(self, method: str, path: str, auth: tuple[str, str] | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        """One request on a fresh connection; ``path`` is quoted here (pass it unquoted)."""
        return http_request(self.host, self.port, method, path, auth, body, headers)

    multistatus = staticmethod(multistatus)

    def new_user(self, plan: str = "standard") -> tuple[str, str]:
        login = f"drive{next(_counter)}-{int(time.time() * 1000) % 10**8}@example.org"
        return self.make_user(login, None, plan)


@pytest.fixture(scope="session")
def drive(server) -> Drive:  # type: ignore[no-untyped-def]
    return Drive(server.host, server.ports["http"], server.make_user)


@pytest.fixture()
def user(drive: Drive) -> tuple[str, str]:
    """A fresh account on a plan with WebDAV."""
    return drive.new_user()


TINY_CONFIG = """
[plans.tiny]
title = "Tiny"
documents_bytes = 100000
webdav = true

[limits]
max_upload_bytes = 60000
"""


@pytest.fixture()
def tiny_drive(start_server) -> Drive:  # type: ignore[no-untyped-def]
    """A server of its own whose plan "tiny" has 100 000 bytes of documents and 60 000-byte uploads."""
    server = start_server(config=TINY_CONFIG)
    return Drive(server.host, server.ports["http"], lambda login, password=None, plan="standard":
                 server.make_user(login, password, plan))


class AsgiDrive:
    """The drive's ASGI app (``build_files_asgi``) on a test core, driven in-process; counts the requests it
    answered without wsgidav (``direct_reads``, ``direct_puts``)."""

    def __init__(self, core) -> None:  # type: ignore[no-untyped-def]
        from kantoor.davserver.files import build_files_asgi

        self.app = build_files_asgi(core.settings, core.store, core.authenticator, core.quota, workers=2)
        # Long enough that a slow test machine never sees the remembered login expire mid-test.
        self.app.ctx.recent_logins.ttl = 600
        self.direct_reads = 0
        self.direct_puts = 0
        reads, own_file, store = self.app.reads, self.app.reads._own_file, self.app._store

        def counting_reads(*args):  # type: ignore[no-untyped-def]
            item = own_file(*args)
            self.direct_reads += item is not None
            return item

        def counting_puts(*args):  # type: ignore[no-untyped-def]
            stored = store(*args)
            self.direct_puts += stored is not None
            return stored

        reads._own_file = counting_reads
        self.app._store = counting_puts

    @staticmethod
    def scope(method: str, path: str, headers: dict[str, str], query: bytes = b"") -> dict:
        """The ASGI scope of a request to ``path`` (under ``/files``) from a loopback client."""
        return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "/files",
                "query_string": query, "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
                "client": ("127.0.0.1", 5000),
                "headers": [(k.lower().encode("latin1"), v.encode("latin1")) for k, v in headers.items()]}

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                query: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of one request to ``path`` (under ``/files``)."""
        import asyncio

        scope = self.scope(method, path, headers, query)
        sent: list[dict] = []
        unread = [body]

        async def receive() -> dict:
            return {"type": "http.request", "body": unread.pop() if unread else b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        asyncio.run(asyncio.wait_for(self.app(scope, receive, send), 30))
        assert sent[0]["type"] == "http.response.start"
        assert sent[-1].get("more_body", False) is False
        headers_out = {k.decode("latin1"): v.decode("latin1") for k, v in sent[0]["headers"]}
        return sent[0]["status"], headers_out, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def asgi_drive(core):  # type: ignore[no-untyped-def]
    drive = AsgiDrive(core)
    yield drive
    drive.app.host.shutdown()
    if drive.app.reads.lookups is not None:
        drive.app.reads.lookups.begin_stop()


@pytest.fixture
def drive_account(core):  # type: ignore[no-untyped-def]
    """``drive_account(login)`` → (principal id, Basic Authorization header) of a new account with WebDAV."""
    import base64

    from kantoor.auth import hash_password

    def make(login: str) -> tuple[int, dict[str, str]]:
        password = "direct-pw-1"
        account = core.store.create_account(login, hash_password(password), "standard")
        token = base64.b64encode(f"{login}:{password}".encode()).decode()
        return account.principal_id, {"Authorization": f"Basic {token}"}

    return make
