"""Dead properties (RFC 4918 §4.2, §9.2): kept per resource, changed all-or-nothing, behind the ACL."""

from __future__ import annotations

import pytest

from kantoor.storage import NotFound, PermissionDenied


def test_dead_properties_round_trip_and_removal(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    root = core.store.find_collection(ann.principal_id, "folder", "", ann.principal_id)
    core.store.put_item(root.id, "a.txt", b"a", "text/plain", actor=ann.principal_id)
    xml = '<x:color xmlns:x="urn:example">blue</x:color>'
    core.store.set_properties(root.id, {"{urn:example}color": xml}, "a.txt", actor=ann.principal_id)
    core.store.set_properties(root.id, {"{urn:example}note": "<n/>"}, actor=ann.principal_id)
    assert core.store.get_properties(root.id, "a.txt", actor=ann.principal_id) == {"{urn:example}color": xml}
    assert core.store.get_properties(root.id, actor=ann.principal_id) == {"{urn:example}note": "<n/>"}
    core.store.set_properties(root.id, {"{urn:example}color": None}, "a.txt", actor=ann.principal_id)
    assert core.store.get_properties(root.id, "a.txt", actor=ann.principal_id) == {}


def test_a_failing_change_applies_none_of_the_batch(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    root = core.store.find_collection(ann.principal_id, "folder", "", ann.principal_id)
    with pytest.raises(ValueError):
        core.store.set_properties(root.id, {"{urn:x}ok": "<ok/>", "no-namespace": "<bad/>"}, actor=ann.principal_id)
    assert core.store.get_properties(root.id, actor=ann.principal_id) == {}
    with pytest.raises(NotFound):
        core.store.set_properties(root.id, {"{urn:x}ok": "<ok/>"}, "missing.txt", actor=ann.principal_id)


def test_properties_follow_the_acl(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    bob = core.store.create_account("bob@example.org", "", "standard")
    root = core.store.find_collection(ann.principal_id, "folder", "", ann.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.get_properties(root.id, actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.set_properties(root.id, {"{urn:x}p": "<p/>"}, actor=bob.principal_id)
