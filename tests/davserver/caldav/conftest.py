"""Fixtures for the CalDAV/CardDAV tests: the real ``server`` (``kantoor serve``) and
small HTTP helpers; every test drives ``/dav/`` over TCP on 127.0.0.1."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from harness import Reply, http_request

_counter = itertools.count(1)


@dataclass
class Dav:
    host: str
    port: int
    make_user: Callable[..., tuple[str, str]]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/dav/"

    def request(self, method: str, path: str, auth: tuple[str, str] | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        """One request on a fresh connection; ``path`` is quoted here (pass it unquoted)."""
        return http_request(self.host, self.port, method, path, auth, body, headers)

    def new_user(self, plan: str = "standard") -> tuple[str, str]:
        login = f"cal{next(_counter)}-{int(time.time() * 1000) % 10**8}@example.org"
        return self.make_user(login, None, plan)

    def client(self, auth: tuple[str, str]):  # type: ignore[no-untyped-def]
        import caldav

        return caldav.DAVClient(url=self.base_url, username=auth[0], password=auth[1], timeout=60)


@pytest.fixture(scope="session")
def dav(server) -> Dav:  # type: ignore[no-untyped-def]
    return Dav(server.host, server.ports["http"], server.make_user)


@pytest.fixture
def dav_of() -> Callable[..., Dav]:
    """``dav_of(server_process)``: the same helpers for another server (``start_server``)."""
    return lambda srv: Dav(srv.host, srv.ports["http"], srv.make_user)


@pytest.fixture
def user(dav: Dav) -> tuple[str, str]:
    return dav.new_user()


def _event(uid: str, summary: str = "Meeting", start: str = "20261201T100000Z", end: str = "20261201T110000Z") -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Kantoor tests//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n"
        f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def _vcard(uid: str, name: str = "Ada Lovelace", email: str = "ada@example.org") -> bytes:
    return (
        "BEGIN:VCARD\r\nVERSION:3.0\r\n"
        f"UID:{uid}\r\nFN:{name}\r\nN:{name.split()[-1]};{name.split()[0]};;;\r\nEMAIL:{email}\r\n"
        "END:VCARD\r\n"
    ).encode()


@pytest.fixture
def make_event() -> Callable[..., bytes]:
    """An iCalendar object with one VEVENT: ``make_event(uid, summary=…, start=…, end=…)``."""
    return _event


@pytest.fixture
def make_vcard() -> Callable[..., bytes]:
    """A vCard 3.0: ``make_vcard(uid, name=…, email=…)``."""
    return _vcard
