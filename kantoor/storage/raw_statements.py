"""Hot statements compiled once per dialect and run on the DBAPI cursor of a Session's transaction.

A mail delivery runs about eight small statements. Through SQLAlchemy each one paid
~0.1 ms of CPU before and after the database's own work (cache key, parameter
construction, execution context, result wrapping) — more than SQLite took to run it.
A :class:`RawStatement` is the same Core statement compiled once for the engine's
dialect (so SQLite and PostgreSQL each get their own SQL and parameter style), with
the column types' bind and result processors applied by hand, run on the cursor of
the connection the Session's transaction already holds: same transaction, same SQL,
same stored values.

Only for statements whose parameters are plain column values (no IN lists, no
post-compile parameters). Statements run this way skip SQLAlchemy's engine events.

A read that is one statement needs no Session at all: :func:`read_rows` runs it on a
connection checked out of the engine's pool (the same connections, the same pool events)
and gives the connection back at once — no ORM session, no transaction object, no result
wrapper. What it reads is what the database holds when the statement runs (nothing is kept).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

_NO_DEFAULT = object()


class RawStatement:
    """``statement`` compiled for ``dialect``; ``keys`` names the columns an INSERT or UPDATE gets values for."""

    def __init__(self, statement: Any, dialect: Dialect, keys: Sequence[str] | None = None,
                 many: bool = False) -> None:
        # ``many``: compiled as for executemany (no implicit RETURNING of the new row's key on PostgreSQL).
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None,
                                     for_executemany=many)
        if (compiled.escaped_bind_names or compiled.literal_execute_params or compiled.post_compile_params
                or compiled.insert_prefetch or compiled.update_prefetch):
            raise ValueError("statement needs SQLAlchemy's parameter processing")
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        names = list(compiled.positiontup) if self.positional else list(binds)
        # Per parameter: (name, bind processor or None, value it has in the statement itself, e.g. kind='mailbox').
        self._params: list[tuple[str, Callable[[Any], Any] | None, Any]] = []
        for name in names:
            bind = binds[name]
            default = bind.effective_value if bind.value is not None or bind.callable is not None else _NO_DEFAULT
            self._params.append((name, bind.type._cached_bind_processor(dialect), default))
        self._names = [name for name, _process, _default in self._params]
        plain = all(default is _NO_DEFAULT for _name, _process, default in self._params) and self._params
        self._plain = operator.itemgetter(*self._names) if plain else None
        self._processed = [(index, process) for index, (_name, process, _default) in enumerate(self._params)
                           if process is not None]
        # RETURNING columns (or a SELECT's): result processors by position.
        self.result_keys: list[str] = []
        self._results: list[Callable[[Any], Any] | None] = []
        for column in getattr(compiled, "_result_columns", None) or ():
            key, _name, _objects, type_ = column[0], column[1], column[2], column[3]
            self.result_keys.append(key)
            self._results.append(type_._cached_result_processor(dialect, None))

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        if self._plain is not None:  # every parameter is a value of ``values``: one C-level look-up for all
            out = list(self._plain(values)) if len(self._params) > 1 else [values[self._params[0][0]]]
            for index, process in self._processed:
                out[index] = process(out[index])
        else:
            out = []
            for name, process, default in self._params:
                value = values[name] if default is _NO_DEFAULT else values.get(name, default)
                out.append(value if process is None else process(value))
        if self.positional:
            return tuple(out)
        return dict(zip(self._names, out, strict=True))

    def values(self, raw: Sequence[Any]) -> list[Any]:
        """A RETURNING/SELECT row's values in column order, the types' result processing applied."""
        return [value if process is None else process(value) for process, value in zip(self._results, raw, strict=True)]

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        """A RETURNING/SELECT row as {column key: value}, the types' result processing applied."""
        return {key: value if process is None else process(value)
                for key, process, value in zip(self.result_keys, self._results, raw, strict=True)}


def cursor(s: Session) -> Any:
    """A DBAPI cursor on the connection of ``s``'s transaction (one per transaction, kept in ``s.info``)."""
    cur = s.info.get("raw_cursor")
    if cur is None:
        cur = s.info["raw_cursor"] = s.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    return cur


def execute(s: Session, statement: RawStatement, values: Mapping[str, Any]) -> Any:
    """Run ``statement`` once in ``s``'s transaction; the DBAPI cursor (for rowcount and fetches)."""
    cur = cursor(s)
    cur.execute(statement.sql, statement.parameters(values))
    return cur


def execute_many(s: Session, statement: RawStatement, rows: Iterable[Mapping[str, Any]]) -> None:
    """Run ``statement`` for every row of ``rows`` (DBAPI executemany) in ``s``'s transaction."""
    params = [statement.parameters(row) for row in rows]
    if params:
        cursor(s).executemany(statement.sql, params)


def returning(s: Session, statement: RawStatement, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run ``statement`` once and return its rows (RETURNING or SELECT) as dicts by column key."""
    cur = execute(s, statement, values)
    return [statement.row(raw) for raw in cur.fetchall()]


@contextmanager
def pooled_cursor(engine: Engine) -> Iterator[Any]:
    """A DBAPI cursor on a connection of ``engine``'s pool, outside any Session or transaction of ours.

    The connection goes back to the pool when the block ends, and the pool's reset-on-return rolls
    back whatever the driver began (PostgreSQL's implicit transaction; SQLite, in autocommit mode
    here, ran each statement as its own read). So: one statement, one consistent snapshot; for
    several that must agree, use a Session. A driver error leaves the block as SQLAlchemy's
    ``DBAPIError`` (as through a Session), and a connection the database dropped is not pooled again."""
    connection = engine.raw_connection()
    try:
        cur = connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            yield cur
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, connection.dbapi_connection, cur):
                connection.invalidate(error)
            raise DBAPIError.instance(None, None, error, engine.dialect.loaded_dbapi.Error,
                                      dialect=engine.dialect) from error
        finally:
            cur.close()
    finally:
        connection.close()


def read_rows(engine: Engine, statement: RawStatement, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run the SELECT ``statement`` on a pooled connection (:func:`pooled_cursor`); its rows as dicts by
    column key, the types' result processing applied."""
    return [statement.row(raw) for raw in _fetch_all(engine, statement, values)]


def read_values(engine: Engine, statement: RawStatement, values: Mapping[str, Any]) -> list[list[Any]]:
    """:func:`read_rows` with each row as its values in column order."""
    return [statement.values(raw) for raw in _fetch_all(engine, statement, values)]


def _fetch_all(engine: Engine, statement: RawStatement, values: Mapping[str, Any]) -> list[Any]:
    params = statement.parameters(values)
    with pooled_cursor(engine) as cur:
        cur.execute(statement.sql, params)
        return cur.fetchall()
