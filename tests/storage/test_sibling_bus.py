"""The SQLite sibling bus (kantoor.storage.notify.SiblingBus): committed events reach the other
processes of the same data directory, once, and nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kantoor.storage.notify import ChangeEvent, Notifier, SiblingBus

pytestmark = pytest.mark.skipif(not SiblingBus.supported(), reason="abstract UNIX sockets: Linux only")


def _event(modseq: int) -> ChangeEvent:
    return ChangeEvent(collection_id=7, owner_id=3, kind="created", modseq=modseq, item_name="x", item_uid=modseq)


def _wait_for(received: list[ChangeEvent], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_event_committed_in_one_process_reaches_siblings_once(tmp_path: Path) -> None:
    directory = tmp_path / "siblings"
    notifiers = [Notifier() for _ in range(3)]
    received: list[list[ChangeEvent]] = [[] for _ in range(3)]
    buses = [SiblingBus(directory, n, identity=f"p{i}") for i, n in enumerate(notifiers)]
    for notifier, sink in zip(notifiers, received, strict=True):
        notifier.subscribe(sink.append)
    for bus in buses:
        bus.start()
    try:
        notifiers[0].publish(_event(1))  # committed in "process" 0
        _wait_for(received[1], 1)
        _wait_for(received[2], 1)
        time.sleep(0.2)  # room for any echo or re-forwarding to arrive
        assert received == [[_event(1)], [_event(1)], [_event(1)]]
    finally:
        for bus in buses:
            bus.stop()
    assert list(directory.iterdir()) == []  # a clean stop withdraws the announcement


def test_other_data_directories_do_not_hear_it(tmp_path: Path) -> None:
    here, there = Notifier(), Notifier()
    heard: list[ChangeEvent] = []
    there.subscribe(heard.append)
    a = SiblingBus(tmp_path / "one", here, identity="a")
    b = SiblingBus(tmp_path / "two", there, identity="b")
    a.start()
    b.start()
    try:
        # Even an announcement copied into the wrong directory does not reach b: the
        # socket address is scoped by the directory it was made for.
        (tmp_path / "one" / "b").touch()
        here.publish(_event(1))
        time.sleep(0.3)
        assert heard == []
        assert not (tmp_path / "one" / "b").exists()  # no such sibling here: forgotten
    finally:
        a.stop()
        b.stop()


def test_events_from_siblings_are_not_forwarded_again(tmp_path: Path) -> None:
    notifier = Notifier()
    forwarded: list[ChangeEvent] = []
    notifier.forward_to(forwarded.append)
    notifier.publish(_event(1), remote=True)
    notifier.publish(_event(2))
    assert forwarded == [_event(2)]


def test_a_send_only_process_reaches_the_listening_ones(tmp_path: Path) -> None:
    """A ``kantoor`` command (attach only, never listening) tells the server processes of its writes."""
    directory = tmp_path / "siblings"
    server, command = Notifier(), Notifier()
    heard: list[ChangeEvent] = []
    server.subscribe(heard.append)
    listening = SiblingBus(directory, server, identity="server")
    sending = SiblingBus(directory, command, identity="command")
    listening.start()
    sending.attach()
    try:
        command.publish(_event(5))
        _wait_for(heard, 1)
        assert heard == [_event(5)]
        assert sorted(p.name for p in directory.iterdir()) == ["server"]  # the command never announced itself
    finally:
        sending.stop()
        listening.stop()


def test_a_process_without_listeners_goes_quiet_and_a_subscription_makes_it_reachable(tmp_path: Path) -> None:
    """A sibling with no IMAP session to tell is sent nothing; a new listener hears every event committed after
    its subscribe() returned (an IDLE push must not be lost to the optimisation)."""
    directory = tmp_path / "siblings"
    writer, idle = Notifier(), Notifier()
    bus_writer = SiblingBus(directory, writer, identity="writer")
    bus_idle = SiblingBus(directory, idle, identity="idle")
    bus_writer.start()
    bus_idle.start()
    try:
        # Nobody listens in either process: both announce themselves quiet, and nothing is sent.
        assert sorted(p.name for p in directory.iterdir()) == ["idle.quiet", "writer.quiet"]
        writer.publish(_event(1))
        heard: list[ChangeEvent] = []
        unsubscribe = idle.subscribe(heard.append)
        assert sorted(p.name for p in directory.iterdir()) == ["idle", "writer.quiet"]  # before subscribe returned
        writer.publish(_event(2))
        _wait_for(heard, 1)
        time.sleep(0.1)
        assert heard == [_event(2)]
        # The listener leaves; the next event finds nobody and the process goes quiet again (lazily).
        unsubscribe()
        writer.publish(_event(3))
        deadline = time.monotonic() + 5
        while (directory / "idle").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(p.name for p in directory.iterdir()) == ["idle.quiet", "writer.quiet"]
        idle.subscribe(heard.append)
        writer.publish(_event(4))
        _wait_for(heard, 2)
        assert heard == [_event(2), _event(4)]
    finally:
        bus_idle.stop()
        bus_writer.stop()
    assert list(directory.iterdir()) == []


def test_a_dead_quiet_sibling_is_forgotten_at_the_next_start(tmp_path: Path) -> None:
    directory = tmp_path / "siblings"
    directory.mkdir()
    (directory / "gone.quiet").touch()  # a process that died without stopping its bus
    bus = SiblingBus(directory, Notifier(), identity="new")
    bus.start()
    try:
        assert sorted(p.name for p in directory.iterdir()) == ["new.quiet"]
    finally:
        bus.stop()
