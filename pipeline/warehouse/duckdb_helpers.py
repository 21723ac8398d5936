"""Small DuckDB helpers of the build: SQL literals, database paths, error text, Arrow tables in.

Paths reach DuckDB as literals. DuckDB globs every ``read_parquet()`` item (list items too),
with ``[...]`` classes, ``*`` and ``?``; the escape is a one-character class: ``[[]``,
``[*]``, ``[?]``. Its globbing and its database paths take a backslash for a directory
separator (no escape exists), and a relative database name may be a prefix such as ``md:``
or ``:memory:``, hence absolute paths.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline._exceptions import ConfigError

__all__ = [
    "count_rows",
    "create_from_arrow",
    "database_path",
    "first_line",
    "parquet_literal",
    "sql_str",
]

_GLOB_CHARACTER = re.compile(r"[\[*?]")


def sql_str(text: str) -> str:
    """``text`` as a single-quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def parquet_literal(path: Path) -> str:
    """The SQL string of a read_parquet() item that matches the file ``path`` and nothing else."""
    text = os.path.abspath(path)
    if _GLOB_CHARACTER.search(text):
        if "\\" in text:
            raise ConfigError(
                f"lake file {path}: DuckDB cannot read a path with both a backslash "
                "and one of [ * ? literally; rename the directory"
            )
        text = _GLOB_CHARACTER.sub(lambda m: f"[{m.group()}]", text)
    return sql_str(text)


def database_path(path: Path) -> str:
    """``path`` as DuckDB opens a database file literally: absolute, no backslash."""
    text = os.path.abspath(path)
    if "\\" in text:
        raise ConfigError(
            f"warehouse {path}: DuckDB takes a backslash in a path for a directory "
            "separator; use a path without one"
        )
    return text


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (DuckDB's messages run over several lines)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def create_from_arrow(
    con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, *, temp: bool = False
) -> None:
    """(Re)create the table ``name`` with the rows and types of the Arrow ``table``."""
    con.register("_arrow_input", table)
    try:
        con.execute(
            f"create or replace {'temp ' if temp else ''}table {name} as select * from _arrow_input"
        )
    finally:
        con.unregister("_arrow_input")


def count_rows(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """Rows of the table ``name``."""
    row = con.execute(f"select count(*) from {name}").fetchone()
    return int(row[0]) if row else 0
