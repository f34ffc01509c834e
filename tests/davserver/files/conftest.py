"""Fixtures for the drive tests: the real ``server`` fixture (``kantoor serve``), or, with
``KANTOOR_TEST_DRIVE_IN_PROCESS=1``, an in-process HTTP server on 127.0.0.1 built the same way
(uvicorn + the dispatcher + a2wsgi + build_files_app), for working on the drive alone."""

from __future__ import annotations

import asyncio
import base64
import http.client
import itertools
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

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
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Drive:
    host: str
    port: int
    make_user: Callable[..., tuple[str, str]]

    def request(self, method: str, path: str, auth: tuple[str, str] | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        """One request on a fresh connection; ``path`` is quoted here (pass it unquoted)."""
        all_headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, quote(path, safe="/@:"), body=body, headers=all_headers)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    multistatus = staticmethod(multistatus)

    def new_user(self, plan: str = "standard") -> tuple[str, str]:
        login = f"drive{next(_counter)}-{int(time.time() * 1000) % 10**8}@example.org"
        return self.make_user(login, None, plan)


def _in_process_drive(data_dir: Path, config: Path | None = None) -> Iterator[Drive]:
    import uvicorn
    from a2wsgi import WSGIMiddleware

    from kantoor.auth import generate_password, hash_password
    from kantoor.config import load_settings
    from kantoor.core import open_core
    from kantoor.davserver.app import Dispatcher
    from kantoor.davserver.files import build_files_app

    settings = load_settings(config, environ={"KANTOOR_STORAGE_DATA_DIR": str(data_dir)})
    core = open_core(settings)
    app = Dispatcher({"/files": WSGIMiddleware(
        build_files_app(settings, core.store, core.authenticator, core.quota), workers=8)})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    def make_user(login: str, password: str | None = None, plan: str = "standard") -> tuple[str, str]:
        password = password or generate_password()
        core.store.create_account(login, hash_password(password), plan)
        return login, password

    try:
        yield Drive("127.0.0.1", port, make_user)
    finally:
        server.should_exit = True
        thread.join(10)
        core.close()


@pytest.fixture(scope="session")
def drive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drive]:
    if os.environ.get("KANTOOR_TEST_DRIVE_IN_PROCESS", "") == "1":
        yield from _in_process_drive(tmp_path_factory.mktemp("drive-data"))
        return
    server = request.getfixturevalue("server")
    yield Drive(server.host, server.ports["http"], server.make_user)


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
def tiny_drive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Drive]:
    """A server of its own whose plan "tiny" has 100 000 bytes of documents and 60 000-byte uploads."""
    config = tmp_path / "kantoor.toml"
    config.write_text(TINY_CONFIG)
    if os.environ.get("KANTOOR_TEST_DRIVE_IN_PROCESS", "") == "1":
        yield from _in_process_drive(tmp_path / "data", config)
        return
    # kantoor serve runs in the data directory's parent and reads ./kantoor.toml there;
    # the CLI that adds users must read the same file to know the plan.
    server = request.getfixturevalue("start_server")(data_dir=tmp_path / "data")

    def make_user(login: str, password: str | None = None, plan: str = "standard") -> tuple[str, str]:
        password = password or f"pw-{secrets.token_urlsafe(12)}"
        result = subprocess.run([sys.executable, "-m", "kantoor", "user", "add", login, "--plan", plan,
                                 "--password-stdin"], env={**server.env, "KANTOOR_CONFIG": str(config)},
                                input=password + "\n", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return login, password

    yield Drive(server.host, server.ports["http"], make_user)
