"""Shared fixtures: a real ``kantoor serve`` process on ephemeral loopback ports,
and storage cores on SQLite and on PostgreSQL (see ``harness.py``).

``server`` is one process for the whole session (fast); ``start_server`` starts
extra ones with their own settings (a test that needs a different configuration,
or two processes on one PostgreSQL database).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import IN_CI, ServerProcess, launch_server, make_settings, pg_admin_url, postgres_available


def pytest_configure(config: pytest.Config) -> None:
    # Tests start `python -m kantoor` with this interpreter: without the package
    # installed every server test would fail for a reason that says nothing.
    import importlib.metadata

    try:
        importlib.metadata.version("kantoor")
        import kantoor.core  # noqa: F401 - and its dependencies
    except (ImportError, importlib.metadata.PackageNotFoundError):
        raise pytest.UsageError(
            "kantoor is not installed in this Python; run ./scripts/test.sh (it installs it) "
            "or `pip install -e '.[test]'` first") from None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    reason = postgres_available()
    if reason is not None:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    import psycopg

    admin = pg_admin_url().replace("+psycopg", "")
    name = f"kantoor_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_admin_url().rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """"" (SQLite in the data directory) or a fresh PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""


@pytest.fixture
def open_test_core(database_url: str, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Factory: ``open_test_core(customize)`` opens a core on this test's database;
    ``customize(settings)`` may change settings first (e.g. add a plan)."""
    from kantoor.core import open_core

    opened = []

    def factory(customize=None):  # type: ignore[no-untyped-def]
        settings = make_settings(tmp_path / "data", database_url)
        if customize is not None:
            customize(settings)
        c = open_core(settings)
        opened.append(c)
        return c

    yield factory
    for c in opened:
        c.close()


@pytest.fixture
def core(open_test_core):  # type: ignore[no-untyped-def]
    """An opened core (Store + ACL + quota) on SQLite and on PostgreSQL."""
    return open_test_core()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One running ``kantoor serve`` (SQLite, ephemeral ports) shared by the session."""
    proc = launch_server(tmp_path_factory.mktemp("server") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Factory: ``start_server(data_dir=None, config=None, **KANTOOR_env)`` starts another
    server for this test; ``config`` is the text of its kantoor.toml."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, config: str | None = None, **env: str) -> ServerProcess:
        proc = launch_server(data_dir or tmp_path / f"data{len(started)}", config, **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
