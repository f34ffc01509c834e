"""Dead properties (RFC 4918 §4.2): client-set properties the server keeps but does not interpret.

Kept per collection or per item, named in Clark notation (``{namespace}name``)
with the property element's XML as text. Reading needs ``read`` on the resource,
changing needs ``write``; a PROPPATCH's changes are applied in one transaction,
all or nothing (RFC 4918 §9.2).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import delete, select

from kantoor.storage.models import DeadProperty, utcnow
from kantoor.storage.transactions import StoreBase, same_or_null

MAX_PROPERTY_BYTES = 64 * 1024  # one value; bounds what a client can park in the database


class PropertiesMixin(StoreBase):
    def get_properties(self, collection_id: int, item_name: str | None = None,
                       actor: int | None = None) -> dict[str, str]:
        """Every dead property of a collection (``item_name`` None) or of one of its items."""
        with self.read() as s:
            coll, item = self._collection_and_item(s, collection_id, item_name)
            self.access.authorize(s, actor, "read", coll, item)
            rows = s.scalars(select(DeadProperty).where(
                same_or_null(DeadProperty.collection_id, None if item else coll.id),
                same_or_null(DeadProperty.item_id, item.id if item else None)))
            return {row.name: row.value for row in rows}

    def set_properties(self, collection_id: int, changes: Mapping[str, str | None], item_name: str | None = None,
                       actor: int | None = None) -> None:
        """Set (value) or remove (None) dead properties, all in one transaction."""
        for name, value in changes.items():
            if not name.startswith("{") or "}" not in name or len(name) > 512:
                raise ValueError(f"property names are {{namespace}}name, got {name!r}")
            if value is not None and len(value.encode()) > MAX_PROPERTY_BYTES:
                raise ValueError(f"property {name} is larger than {MAX_PROPERTY_BYTES} bytes")
        with self.write() as s:
            coll, item = self._collection_and_item(s, collection_id, item_name)
            self.access.authorize(s, actor, "write", coll, item)
            owner = {"collection_id": None if item else coll.id, "item_id": item.id if item else None}
            for name, value in changes.items():
                s.execute(delete(DeadProperty).where(
                    same_or_null(DeadProperty.collection_id, owner["collection_id"]),
                    same_or_null(DeadProperty.item_id, owner["item_id"]), DeadProperty.name == name))
                if value is not None:
                    s.add(DeadProperty(name=name, value=value, **owner))
            if item is not None:
                item.updated_at = utcnow()
            else:
                coll.updated_at = utcnow()
