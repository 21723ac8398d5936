"""Incremental builds: which lake partitions changed, and recomputing only those.

``mart_lake_manifest`` records every lake file (size, mtime, its directory's mtime) and
``mart_build_info.inputs_fingerprint`` the price book, policy, lake path and code. When the
fingerprint is unchanged, the next build lists only the partition directories whose mtime
changed (:func:`~pipeline.warehouse.lake_sources.lake_files`), starts from a copy of the
warehouse and recomputes only the event_date partitions whose files changed in the models marked
``-- incremental: partition event_date, key event_id`` (the big facts); everything
downstream of them is rebuilt from the facts. An event_id found in both a changed and an
unchanged partition (which a full build would deduplicate across partitions) makes the
build fall back to a full one (:class:`NeedsFullBuild`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline._exceptions import PipelineError
from pipeline.lake import EVENT_TABLES, Lake
from pipeline.warehouse.lake_sources import LakeFile, lake_location
from pipeline.warehouse.models import BUILD_ONLY_LAYERS, Model, lake_sources
from pipeline.warehouse.readonly import open_warehouse_readonly

__all__ = [
    "NeedsFullBuild",
    "PreviousBuild",
    "fingerprint",
    "incremental_plan",
    "merge_partitions",
    "previous_build",
]

_PACKAGE = Path(__file__).resolve().parent.parent
#: The code whose change makes the next build a full one (with every file of sql/).
_CODE = ("warehouse", "policy", "prices.py", "lake.py")


class NeedsFullBuild(Exception):
    """An incremental build found something only a full build handles correctly."""


def fingerprint(lake: Lake, prices_sha256: str, policy_sha256: str, sql_dir: Path) -> str:
    """What an incremental build must share with the previous one: inputs other than the lake, code."""
    digest = hashlib.sha256()
    for part in (lake_location(lake), prices_sha256, policy_sha256):
        digest.update(part.encode() + b"\0")
    files = [
        (f"sql/{p.relative_to(sql_dir).as_posix()}", p) for p in sorted(sql_dir.rglob("*.sql"))
    ]
    for name in _CODE:
        path = _PACKAGE / name
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files += [(f"pipeline/{p.relative_to(_PACKAGE).as_posix()}", p) for p in found]
    for label, path in files:
        if path.is_file():
            digest.update(label.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class PreviousBuild:
    """What the current warehouse records of the build that made it."""

    fingerprint: str
    #: (lake table, partition value) -> the files the build read there
    files: dict[tuple[str, str], list[LakeFile]]
    #: (lake table, partition value) -> the directory's trusted mtime then
    directory_mtimes: dict[tuple[str, str], int]

    def known(self) -> dict[tuple[str, str], tuple[int, list[LakeFile]]]:
        """For :func:`~pipeline.warehouse.lake_sources.lake_files`: the directories that
        need no listing when their mtime is unchanged."""
        return {k: (m, self.files.get(k, [])) for k, m in self.directory_mtimes.items()}


def previous_build(target: Path) -> tuple[PreviousBuild | None, str]:
    """The current warehouse's fingerprint and lake manifest, or (None, why not)."""
    if not target.is_file():
        return None, "no warehouse yet"
    try:
        con = open_warehouse_readonly(target)
    except PipelineError as exc:
        return None, str(exc)
    try:
        row = con.execute("select inputs_fingerprint from mart_build_info").fetchone()
        columns = {c[0] for c in con.execute("describe mart_lake_manifest").fetchall()}
        directory = (
            "directory_modified_ns" if "directory_modified_ns" in columns else "null::bigint"
        )
        manifest = con.execute(
            "select lake_table, partition_value, path, bytes, modified_ns, "
            f"{directory} from mart_lake_manifest"
        ).fetchall()
    except duckdb.Error:
        return None, "the warehouse predates incremental builds"
    finally:
        con.close()
    if not row:
        return None, "the warehouse records no build"
    files: dict[tuple[str, str], list[LakeFile]] = defaultdict(list)
    directory_mtimes: dict[tuple[str, str], int] = {}
    for table, partition, path, size, modified_ns, directory_ns in manifest:
        files[(table, partition)].append(
            LakeFile(table, partition, Path(path), size, modified_ns, directory_ns)
        )
        if directory_ns is not None:
            directory_mtimes[(table, partition)] = directory_ns
    return PreviousBuild(str(row[0]), dict(files), directory_mtimes), ""


def incremental_plan(
    previous: PreviousBuild,
    inputs_fingerprint: str,
    files: dict[str, list[LakeFile]],
    models: list[Model],
) -> tuple[dict[str, set[str]] | None, str]:
    """(changed partitions per event table, "") for an incremental build, or (None, why not)."""
    by_name = {m.name: m for m in models}
    for model in models:
        if model.layer in BUILD_ONLY_LAYERS or model.partition_column:
            continue
        partial = [
            n
            for n in model.depends_on
            if n in by_name
            and by_name[n].layer in BUILD_ONLY_LAYERS
            and lake_sources(by_name[n], by_name) & set(EVENT_TABLES)
        ]
        if partial:
            return None, f"{model.name} reads {partial[0]} directly"
    if previous.fingerprint != inputs_fingerprint:
        return None, "price book, policy, lake path or models changed"

    def state(found: list[LakeFile]) -> set[tuple[str, int, int]]:
        return {(f.path.name, f.bytes, f.mtime_ns) for f in found}

    before = {key: state(found) for key, found in previous.files.items()}
    now: dict[tuple[str, str], list[LakeFile]] = defaultdict(list)
    for table, found in files.items():
        for f in found:
            now[(table, f.partition)].append(f)
    plan: dict[str, set[str]] = {table: set() for table in EVENT_TABLES}
    for table, partition in before.keys() | now.keys():
        if table in plan and before.get((table, partition)) != state(
            now.get((table, partition), [])
        ):
            plan[table].add(partition)
    return plan, ""


def merge_partitions(
    con: duckdb.DuckDBPyConnection, model: Model, body: str, partitions: list[str]
) -> None:
    """Replace the rows of ``partitions`` of ``model`` with the recomputed ones."""
    part, key = model.partition_column, model.key_column
    # A literal list (not a subquery) so that DuckDB pushes the filter down to the scans.
    values = ", ".join(f"date '{dt.date.fromisoformat(p).isoformat()}'" for p in partitions)

    def changed(column: str) -> str:
        return f"{column} in ({values})" if partitions else "false"

    in_changed = changed(str(part))
    con.execute(
        f"create or replace temp table _increment as\nselect * from (\n{body}\n) where {in_changed}"
    )
    if key:
        clash = con.execute(
            f"select count(*) from _increment as i join {model.name} as t on t.{key} = i.{key} "
            f"where not {changed(f't.{part}')}"
        ).fetchone()
        if clash and clash[0]:
            raise NeedsFullBuild(
                f"{clash[0]} {key}(s) of {model.name} also in unchanged partitions"
            )
    con.execute(f"delete from {model.name} where {in_changed}")
    con.execute(f"insert into {model.name} by name select * from _increment")
    con.execute("drop table _increment")
