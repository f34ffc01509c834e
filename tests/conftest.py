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


def _missing_installation() -> str | None:
    """Why this Python cannot run Kantoor (tests start `python -m kantoor` with it), or None."""
    import importlib.metadata

    try:
        importlib.metadata.version("kantoor")
        import kantoor.core  # noqa: F401 - and its dependencies
    except importlib.metadata.PackageNotFoundError:
        return "kantoor is not installed in this Python"
    except ImportError as exc:
        return f"{exc.name or exc} (a dependency of kantoor) is not installed in this Python"
    return None


NOT_INSTALLED = _missing_installation()
NOT_INSTALLED_HINT = "run ./scripts/test.sh (it installs everything) or `pip install -e '.[test]'` first"


def pytest_configure(config: pytest.Config) -> None:
    # In CI a missing installation is an error, never a skipped suite.
    if NOT_INSTALLED and IN_CI:
        raise pytest.UsageError(f"{NOT_INSTALLED}; {NOT_INSTALLED_HINT}")


class _NeedsInstallation(pytest.Item):
    """One test file that cannot be imported here: it skips, naming what is missing."""

    def runtest(self) -> None:
        pytest.skip(f"{NOT_INSTALLED}; {NOT_INSTALLED_HINT}")

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, self.name


class _UninstalledTests(pytest.Directory):
    """Outside CI, without Kantoor installed: every test file below as one skipping item, so
    collection works and says why, instead of failing on the first import (nothing is imported)."""

    def collect(self) -> Iterator[pytest.Item]:
        for path in sorted(self.path.rglob("test_*.py")):
            yield _NeedsInstallation.from_parent(self, name=str(path.relative_to(self.path)), path=path)


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    # Called for the folders below this one (this conftest's hooks do not see its own folder);
    # their conftest.py files import Kantoor's dependencies, so they are not entered at all.
    if NOT_INSTALLED and path.parent == Path(__file__).parent:
        return _UninstalledTests.from_parent(parent, path=path)
    return None


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
