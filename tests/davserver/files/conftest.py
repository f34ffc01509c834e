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
