"""`kantoor queue delete` in the store: several messages in one transaction, all or none, bodies released."""

from __future__ import annotations

import pytest

from kantoor.storage import NotFound
from kantoor.storage.models import Blob
from kantoor.storage.outbound import NewOutbound


def _blob_refcount(core, sha: str) -> int:  # type: ignore[no-untyped-def]
    with core.store.read() as s:
        blob = s.get(Blob, sha)
        return blob.refcount if blob else 0


def _big(core) -> bytes:  # type: ignore[no-untyped-def]
    """A body too large to be stored inline: it lives in a reference-counted blob."""
    return b"Subject: big\r\n\r\n" + b"x" * (core.store.inline_limit + 10)


def test_an_unknown_id_deletes_none(core) -> None:  # type: ignore[no-untyped-def]
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net"], _big(core)))
    assert row.blob_sha256 is not None
    with pytest.raises(NotFound, match="no queued message 998, 999"):
        core.store.delete_outbound(row.id, 999, 998)
    assert [m.id for m in core.store.list_outbound()] == [row.id]
    assert _blob_refcount(core, row.blob_sha256) == 1  # the body was not released either
    assert core.store.outbound_body(core.store.get_outbound(row.id)) == _big(core)


def test_several_ids_are_deleted_together_and_their_bodies_released(core) -> None:  # type: ignore[no-untyped-def]
    # Two queued copies of one large body share its blob (two references); a third is inline.
    first = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net"], _big(core)))
    second = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["b@x.net"], _big(core)))
    small = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["c@x.net"], b"hi"))
    kept = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["d@x.net"], b"keep"))
    sha = first.blob_sha256
    assert sha is not None and second.blob_sha256 == sha and _blob_refcount(core, sha) == 2
    core.store.delete_outbound(first.id, second.id, small.id, first.id)  # a repeated id is one message
    assert [m.id for m in core.store.list_outbound(None)] == [kept.id]
    assert _blob_refcount(core, sha) == 0
    for message_id in (first.id, second.id, small.id):
        with pytest.raises(NotFound):
            core.store.get_outbound(message_id)


def test_one_id_still_works_and_a_second_delete_is_not_found(core) -> None:  # type: ignore[no-untyped-def]
    row = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net"], b"hi"))
    core.store.delete_outbound(row.id)
    with pytest.raises(NotFound, match=f"no queued message {row.id}"):
        core.store.delete_outbound(row.id)
