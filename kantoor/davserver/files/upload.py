"""PUT bodies: wsgidav's request-body stream goes straight into ``Store.put_item``.

wsgidav hands the body to ``writelines()`` of the object ``begin_write()``
returns, as an iterator of chunks. Passing that iterator on to the Store lets the
blob store write it to disk chunk by chunk, so a large upload is never held in
memory (only a body up to the Store's inline limit, 16 KiB, is collected first),
and the whole write (quota, row, change log) is one transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from wsgidav.dav_error import DAVError
from wsgidav.lock_man.lock_manager import normalize_lock_root

from kantoor.davserver.files.errors import as_dav_error
from kantoor.storage.locks import WriteClaim

if TYPE_CHECKING:
    from kantoor.davserver.files.resources import File


def small_or_stream(chunks: Iterable[bytes], limit: int) -> bytes | Iterator[bytes]:
    """The whole body as bytes if it ends within ``limit`` (the Store keeps those inline,
    without a blob file to write and fsync), else an iterator over all of it."""
    iterator = iter(chunks)
    head: list[bytes] = []
    size = 0
    for chunk in iterator:
        head.append(chunk)
        size += len(chunk)
        if size > limit:
            return itertools.chain(head, iterator)
    return b"".join(head)


class Upload:
    def __init__(self, target: File, content_type: str) -> None:
        self.target = target
        self.content_type = content_type
        # Set when the Store refused the body; File.end_write() raises it.
        self.error: DAVError | None = None

    def writelines(self, chunks: Iterable[bytes]) -> None:
        target = self.target
        store = target.ctx.store
        body = small_or_stream(chunks, store.inline_limit)
        max_size = target.ctx.settings.limits.max_upload_bytes
        try:
            if target.drop:
                # Another's Drop folder: a taken name gets a new one, nothing is replaced.
                item = store.drop_item(target.collection.id, target.item_name, body, self.content_type,
                                       actor=target.actor, max_size=max_size)
            else:
                item, _created = store.put_item(target.collection.id, target.item_name, body, self.content_type,
                                                actor=target.actor, max_size=max_size, claim=self._claim())
        except Exception as exc:
            mapped = as_dav_error(exc)
            if mapped is None:
                raise
            self.error = mapped
            return
        target.item = item

    def _claim(self) -> WriteClaim:
        """Who writes, with which lock tokens: the Store checks the locks again when it commits, since
        another server process may have granted a LOCK while this body was arriving."""
        environ = self.target.environ
        return WriteClaim(root=normalize_lock_root(self.target.get_ref_url()),
                          principal=environ.get("wsgidav.user_name") or "",
                          tokens=frozenset(environ.get("wsgidav.ifLockTokenList") or ()))

    def close(self) -> None:
        return None
