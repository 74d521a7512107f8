"""Multi-row INSERTs of plain rows, as cheap as the database driver allows.

SQLAlchemy's ``connection.execute(insert(table), rows)`` builds the parameters of every row
through the compiled statement (about as much work as SQLite's own insert of the row). For rows
whose values need no conversion (text, integers, floats, None) on SQLite, the statement is
compiled once per table and column set and the rows go to the driver's ``executemany`` as tuples.
Other databases take the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Insert

# (statement, columns of the rows) -> (SQL text with positional parameters, row -> parameter tuple), for SQLite
_SQLITE: dict[tuple[Insert, frozenset[str]], tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]] = {}


def insert_plain_rows(connection: Connection, statement: Insert, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys; values of plain types only: str, int, float, None).

    Values are passed to the driver as they are: dates, booleans stored as text or JSON must be
    converted by the caller (or take ``connection.execute``).
    """
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.execute(statement, list(rows))
        return
    key = (statement, frozenset(rows[0]))
    prepared = _SQLITE.get(key)
    if prepared is None:
        unknown = set(rows[0]) - set(statement.table.c.keys())
        if unknown:
            raise ValueError(f"{statement.table} has no column {', '.join(sorted(unknown))}")
        compiled = statement.compile(dialect=connection.dialect, column_keys=list(rows[0]))
        order = list(compiled.positiontup or ())
        getter = itemgetter(*order)
        prepared = _SQLITE[key] = (str(compiled), getter if len(order) > 1 else lambda row: (getter(row),))
    sql, parameters = prepared
    connection.exec_driver_sql(sql, list(map(parameters, rows)))
