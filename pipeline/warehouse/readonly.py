"""Read-only access to the warehouse, for the report, the data-quality checks and finance."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline._exceptions import ConfigError, WarehouseError
from pipeline.warehouse.duckdb_helpers import database_path, sql_str

__all__ = ["open_warehouse_readonly"]


def open_warehouse_readonly(path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse at ``path``, session time zone UTC.

    The file is ATTACHed to a fresh in-memory database rather than opened with
    ``duckdb.connect(path)``: DuckDB caches one database instance per path and process, so a
    second ``connect`` after a rebuild would still see the replaced file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"warehouse {path} does not exist; run `modelmeter build` first")
    literal = database_path(path)
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"attach {sql_str(literal)} as warehouse (read_only)")
        con.execute("use warehouse")
    except duckdb.Error as exc:
        con.close()
        raise WarehouseError(f"cannot open warehouse {path}: {exc}") from None
    return con
