"""ARCHITECTURE invariant 2: two processes on one PostgreSQL see and are notified of each other's writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# A second OS process: opens its own core on the same database, LISTENs, and prints
# every change event it receives from other processes as one JSON line.
LISTENER = textwrap.dedent("""
    import json, sys, time
    from kantoor.config import load_settings
    from kantoor.core import open_core
    settings = load_settings(path=None, environ={"KANTOOR_STORAGE_DATA_DIR": sys.argv[1],
                                                 "KANTOOR_STORAGE_DATABASE_URL": sys.argv[2]})
    core = open_core(settings, migrate=False)
    core.store.notifier.subscribe(lambda e: print(json.dumps(e.__dict__), flush=True))
    core.start_cross_process_notifications()
    print("LISTENING", flush=True)
    time.sleep(float(sys.argv[3]))
    core.close()
""")


def _deliver_while_another_process_listens(writer, inbox_id: int, owner_id: int,  # type: ignore[no-untyped-def]
                                           listener_args: list[str]) -> None:
    """Deliver one message through ``writer`` while a second OS process (LISTENER) listens;
    assert that process heard exactly this change."""
    other = subprocess.Popen([sys.executable, "-c", LISTENER, *listener_args, "20"],
                             stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "LISTENING"
        message = writer.store.deliver_message(inbox_id, b"Subject: across\r\n\r\nhello\r\n")
        deadline = time.monotonic() + 15
        event = None
        while time.monotonic() < deadline:
            line = other.stdout.readline()
            if line.startswith("{"):
                event = json.loads(line)
                break
        assert event is not None, "the other process heard nothing"
        assert event == {"collection_id": inbox_id, "owner_id": owner_id, "kind": "created",
                         "modseq": message.modseq, "item_name": str(message.uid), "item_uid": message.uid}
    finally:
        other.kill()
        other.communicate(timeout=10)


def test_write_in_one_process_is_seen_and_notified_in_another(postgres_url: str, tmp_path: Path) -> None:
    from kantoor.config import load_settings
    from kantoor.core import open_core

    settings = load_settings(path=None, environ={"KANTOOR_STORAGE_DATA_DIR": str(tmp_path / "a"),
                                                 "KANTOOR_STORAGE_DATABASE_URL": postgres_url})
    writer = open_core(settings)
    try:
        account = writer.store.create_account("ann@example.org", "", "standard")
        inbox = writer.store.mailbox(account.principal_id, "INBOX")
        _deliver_while_another_process_listens(writer, inbox.id, account.principal_id,
                                               [str(tmp_path / "b"), postgres_url])
        # And a second process reads what the first wrote (no process-local state).
        reader = open_core(load_settings(path=None, environ={
            "KANTOOR_STORAGE_DATA_DIR": str(tmp_path / "a"), "KANTOOR_STORAGE_DATABASE_URL": postgres_url}),
            migrate=False)
        try:
            assert [m.subject for m in reader.store.list_messages(inbox.id)] == ["across"]
        finally:
            reader.close()
    finally:
        writer.close()


def test_sqlite_processes_of_one_data_directory_notify_each_other(tmp_path: Path) -> None:
    """On SQLite (one machine by nature) change events cross processes through the data directory's sibling bus."""
    from kantoor.config import load_settings
    from kantoor.core import open_core

    data = tmp_path / "data"
    writer = open_core(load_settings(path=None, environ={"KANTOOR_STORAGE_DATA_DIR": str(data)}))
    writer.start_cross_process_notifications()
    try:
        account = writer.store.create_account("ann@example.org", "", "standard")
        inbox = writer.store.mailbox(account.principal_id, "INBOX")
        _deliver_while_another_process_listens(writer, inbox.id, account.principal_id, [str(data), ""])
        # The killed process never said goodbye: the next event finds it gone and forgets it.
        siblings = data / "run" / "siblings"
        assert len(list(siblings.iterdir())) == 2
        writer.store.deliver_message(inbox.id, b"Subject: again\r\n\r\nhello\r\n")
        assert len(list(siblings.iterdir())) == 1
    finally:
        writer.close()
