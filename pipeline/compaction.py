"""``modelmeter compact``: rewrite the closed days of the lake into few files.

A *flush* of a Kafka partition is every lake file of one name
``<topic>+<partition>+<first>+<last>`` (all tables, all days; :mod:`pipeline.lake`). A
*run* is a sequence of consecutive flushes of one partition (consecutive in offset order,
none of the partition's flushes left out between them), all of them *settled*: every file
in a day closed ``settle`` ago (and before ``--before``), older than ``settle``, and the
flush complete (its files hold ``last - first + 1`` rows). A run never mixes the flushes of
two days (a flush's day: the latest of its files' days) and stops growing at
``target_bytes`` of input. Each run of two flushes or more is rewritten into one file per
(table, day) it touches, named ``<topic>+<partition>+<first of the run>+<last of the
run>``: still a flush for recovery and for the reconciliation (its files together hold its
offsets exactly once), which is why a run is whole flushes and never skips one.

Per run, crash-safe at any point:

1. each new file is written under ``.compact-<name>.partial`` in its directory (never
   matched by a reader's ``*.parquet``), fsynced, read back and verified against its inputs
   (row count and an order-independent checksum of every row);
2. a journal naming the new files and their inputs is written atomically
   (``_index/compaction/``): the commit point;
3. the new files are renamed to their names, then the inputs removed, then the journal.

A compaction that died after 2 is finished by the next one (the journal is replayed);
before it, its temporary files are removed. Between a rename and the removal of its inputs,
a directory holds the new file and the inputs it covers: readers take a file whose offset
range lies inside another's of the same partition for covered (the warehouse's
:func:`~pipeline.warehouse.lake_sources.lake_files`), so they see one consistent set.
Recovery is not concerned (it only touches offsets past the committed one, and a settled
flush is far behind it), and a running consumer is never disturbed: a late event for a
compacted day lands in a new file that a later compaction rewrites with its own run.

The algorithm is written once against a :class:`~pipeline.compaction_store.Store`: the
local lake's (:class:`LocalStore` here: ``O_NOFOLLOW`` directories, fsync, rename, an
``fcntl`` lock) or a bucket's (:class:`~pipeline.compaction_store.BucketStore`: one PUT per
temporary file and journal, a server-side copy instead of the rename, a lock object).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline._exceptions import ConfigError, LakeWriteError
from pipeline.compaction_store import (
    COMPACT_PREFIX,
    JOURNAL_DIR,
    TABLES,
    BucketStore,
    Flushes,
    Store,
    StoredFile,
    new_flushes,
    temp_name,
)
from pipeline.files import NEW_FILE_FLAGS, atomic_write
from pipeline.lake import SCHEMAS, FileName, open_lake_dir, write_parquet
from pipeline.lake_files import Lake, covered
from pipeline.object_lake import ObjectLake

__all__ = ["CompactResult", "compact_lake", "JOURNAL_DIR", "COMPACT_PREFIX", "LocalStore"]

log = logging.getLogger(__name__)

DEFAULT_SETTLE = dt.timedelta(hours=2)
DEFAULT_TARGET_BYTES = 128 * 1024 * 1024
_Run = list[tuple[FileName, list[StoredFile]]]


@dataclass
class CompactResult:
    runs: int = 0
    files_removed: int = 0
    files_written: int = 0
    rows: int = 0
    journals_replayed: int = 0
    temp_removed: int = 0
    covered_removed: int = 0
    skipped: list[str] = field(default_factory=list)


def compact_lake(
    lake: Lake,
    *,
    before: dt.date | None = None,
    settle: dt.timedelta = DEFAULT_SETTLE,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    now: dt.datetime | None = None,
) -> CompactResult:
    """Compact the settled days of ``lake`` (those before ``before`` too, when given)."""
    result = CompactResult()
    store: Store
    if isinstance(lake, ObjectLake):
        lake.check()
        store = BucketStore(lake)
    else:
        lake = Path(lake)
        if not lake.is_dir():
            return result
        store = LocalStore(lake)
    horizon = (now or dt.datetime.now(dt.UTC)) - settle
    last_day = horizon.date()  # days before it ended ``settle`` ago
    if before is not None:
        last_day = min(last_day, before)
    with store.locked():
        result.journals_replayed = _replay_journals(store)
        result.temp_removed = store.remove_temps()
        flushes = store.flushes()
        result.covered_removed = _remove_covered(store, flushes)
        for (topic, partition), named in sorted(flushes.items()):
            for run in _runs(store, named, last_day, int(horizon.timestamp() * 1e9), target_bytes):
                try:
                    _compact_run(store, topic, partition, run, result)
                except _Skip as exc:
                    log.warning("compact: %s", exc)
                    result.skipped.append(str(exc))
    return result


def _remove_covered(store: Store, flushes: Flushes) -> int:
    """Remove the files another file of the same directory and Kafka partition covers (never
    read: :func:`~pipeline.lake_files.covered`) once every offset of theirs is found in the
    files covering them, and forget them in ``flushes``. The same offsets may have been
    validated differently by two consumers (a clock-dependent check, a zombie's flush): a
    covered file holding an offset the others lack is kept and reported."""
    entries = [
        (f.directory, name)
        for named in flushes.values()
        for name, files in named.items()
        for f in files
    ]
    hidden = covered(entries)
    removed: set[tuple[str, FileName]] = set()
    read: dict[tuple[str, FileName], set[int]] = {}

    def offsets(directory: str, name: FileName) -> set[int]:
        """The file's kafka_offset values, each file read once (one file may cover several)."""
        if (directory, name) not in read:
            table = store.read(directory, str(name))
            read[(directory, name)] = set(table.column("kafka_offset").to_pylist())
        return read[(directory, name)]

    for directory, name in sorted(hidden, key=lambda pair: (pair[0], str(pair[1]))):
        cover = [
            other
            for d, other in entries
            if d == directory
            and (d, other) not in hidden
            and (other.topic, other.partition) == (name.topic, name.partition)
            and other.first_offset <= name.last_offset
            and other.last_offset >= name.first_offset
        ]
        found: set[int] = set()
        for other in cover:
            found |= offsets(directory, other)
        missing = offsets(directory, name) - found
        if missing:
            log.warning(
                "compact: %s/%s is covered by another file but holds %s offset(s) it lacks"
                " (e.g. %s): kept",
                directory,
                name,
                len(missing),
                min(missing),
            )
            continue
        log.info("compact: %s/%s is covered by another file: removed", directory, name)
        store.discard(directory, str(name))
        removed.add((directory, name))
    for named in flushes.values():
        for name in list(named):
            named[name] = [f for f in named[name] if (f.directory, name) not in hidden]
            if not named[name]:
                del named[name]
    return len(removed)


class _Skip(Exception):
    """A run left as it is (its files are untouched)."""


def _runs(
    store: Store,
    named: dict[FileName, list[StoredFile]],
    last_day: dt.date,
    horizon_ns: int,
    target_bytes: int,
) -> Iterator[_Run]:
    run: _Run = []
    run_day: dt.date | None = None
    run_bytes = 0
    for name in sorted(named, key=lambda n: (n.first_offset, n.last_offset)):
        files = named[name]
        day = max(f.day for f in files)
        size = sum(f.bytes for f in files)
        settled = (
            all(f.day < last_day and f.mtime_ns < horizon_ns for f in files)
            and (not run or name.first_offset > run[-1][0].last_offset)
            and store.complete(name, files)
        )
        if not settled or day != run_day or run_bytes + size > target_bytes:
            if len(run) > 1:
                yield run
            run, run_day, run_bytes = [], None, 0
            if not settled:
                continue
        run.append((name, files))
        run_day, run_bytes = day, run_bytes + size
    if len(run) > 1:
        yield run


def _checksum(con: duckdb.DuckDBPyConnection, table: pa.Table) -> tuple[int, int]:
    """(rows, sum of every row's hash): equal for the same rows in any order."""
    con.register("_rows", table)
    try:
        count, total = con.execute(
            "select count(*), coalesce(sum(hash(t)::hugeint), 0) from _rows t"
        ).fetchall()[0]
    finally:
        con.unregister("_rows")
    return int(count), int(total)


def _compact_run(
    store: Store, topic: str, partition: int, run: _Run, result: CompactResult
) -> None:
    target = FileName(topic, partition, run[0][0].first_offset, run[-1][0].last_offset)
    inputs: dict[str, list[str]] = defaultdict(list)
    for flush, files in run:
        for f in files:
            inputs[f.directory].append(str(flush))
    temp = temp_name(str(target))
    con = duckdb.connect()
    written: list[str] = []
    rows = 0
    try:
        for directory, names in sorted(inputs.items()):
            schema = SCHEMAS[directory.split("/")[0]]
            parts = []
            for input_name in names:
                data = store.read(directory, input_name)
                if not data.schema.equals(schema, check_metadata=False):
                    raise _Skip(f"{directory}/{input_name}: not the lake schema; run {target} left")
                parts.append(data)
            table = pa.concat_tables(parts)
            table = table.take(pc.sort_indices(table["kafka_offset"]))
            expected = _checksum(con, table)
            store.write_temp(directory, temp, table)
            written.append(directory)
            back = store.read(directory, temp)
            if _checksum(con, back) != expected:
                raise _Skip(f"{directory}/{temp}: read back different rows; run {target} left")
            rows += expected[0]
    except BaseException:
        for directory in written:
            store.discard(directory, temp)
        raise
    finally:
        con.close()
    journal = {"version": 1, "name": str(target), "dirs": dict(sorted(inputs.items()))}
    store.write_journal(f"{target}.json", json.dumps(journal).encode())
    _finish(store, journal)
    result.runs += 1
    result.rows += rows
    result.files_written += len(inputs)
    result.files_removed += sum(len(names) for names in inputs.values())


def _finish(store: Store, journal: dict[str, Any]) -> None:
    """Put a journal's new files in place, remove their inputs, then the journal
    (idempotent: a replay after a crash at any step ends the same)."""
    final = str(journal["name"])
    temp = temp_name(final)
    for directory, names in journal["dirs"].items():
        if not store.publish(str(directory), temp, final):
            log.error("compact: %s/%s is missing; its inputs are kept", directory, final)
            continue
        store.retire(str(directory), [str(n) for n in names if n != final], temp)
    store.remove_journal(f"{final}.json")


def _replay_journals(store: Store) -> int:
    journals = store.journals()
    for journal in journals:
        log.warning("compact: finishing %s, cut short", journal["name"])
        _finish(store, journal)
    return len(journals)


class LocalStore:
    """The :class:`~pipeline.compaction_store.Store` of a local (or mounted) lake."""

    def __init__(self, lake: Path) -> None:
        self.lake = lake

    @contextmanager
    def locked(self) -> Iterator[None]:
        fd = open_lake_dir(self.lake, JOURNAL_DIR, create=True)
        try:
            lock = os.open("compact.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666, dir_fd=fd)
        finally:
            os.close(fd)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LakeWriteError(
                    "another compaction of this lake is running", path=str(self.lake)
                ) from None
            yield
        finally:
            os.close(lock)

    def journals(self) -> list[dict[str, Any]]:
        fd = open_lake_dir(self.lake, JOURNAL_DIR, create=True)
        try:
            names = sorted(n for n in os.listdir(fd) if n.endswith(".json") and n[0] != ".")
        finally:
            os.close(fd)
        return [json.loads((self.lake.joinpath(*JOURNAL_DIR) / n).read_bytes()) for n in names]

    def remove_temps(self) -> int:
        removed = 0
        lake = self.lake
        for path in [*lake.glob(f"*/*/{COMPACT_PREFIX}*"), *lake.glob("_index/compaction/.*")]:
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def flushes(self) -> Flushes:
        found = new_flushes()
        for table in TABLES:
            table_dir = self.lake / table
            if not table_dir.is_dir() or table_dir.is_symlink():
                continue
            for part in sorted(os.scandir(table_dir), key=lambda e: e.name):
                if not part.is_dir(follow_symlinks=False) or "=" not in part.name:
                    continue
                try:
                    day = dt.date.fromisoformat(part.name.split("=", 1)[1])
                except ValueError:
                    continue
                for entry in os.scandir(part.path):
                    name = FileName.parse(entry.name)
                    if name is None or not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                    found[(name.topic, name.partition)][name].append(
                        StoredFile(
                            f"{table}/{part.name}", day, name, stat.st_size, stat.st_mtime_ns
                        )
                    )
        return found

    def complete(self, name: FileName, files: list[StoredFile]) -> bool:
        try:
            rows = sum(
                pq.read_metadata(self.lake / f.directory / str(name)).num_rows for f in files
            )
        except (OSError, pa.ArrowException):
            return False
        return rows == name.last_offset - name.first_offset + 1

    def read(self, directory: str, name: str) -> pa.Table:
        return pq.ParquetFile(self.lake / directory / name).read()

    def write_temp(self, directory: str, temp: str, table: pa.Table) -> None:
        dir_fd = open_lake_dir(self.lake, directory.split("/"))
        try:
            fd = os.open(temp, NEW_FILE_FLAGS, 0o666, dir_fd=dir_fd)
            with os.fdopen(fd, "wb") as fh:
                write_parquet(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            os.close(dir_fd)

    def discard(self, directory: str, name: str) -> None:
        (self.lake / directory / name).unlink(missing_ok=True)

    def write_journal(self, name: str, body: bytes) -> None:
        journal_fd = open_lake_dir(self.lake, JOURNAL_DIR, create=True)
        try:
            with atomic_write(name, dir_fd=journal_fd) as fh:
                fh.write(body)
        finally:
            os.close(journal_fd)

    def publish(self, directory: str, temp: str, final: str) -> bool:
        dir_fd = open_lake_dir(self.lake, directory.split("/"))
        try:
            with suppress(FileNotFoundError):  # else renamed before a crash
                os.replace(temp, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            try:
                os.stat(final, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            os.fsync(dir_fd)
            return True
        finally:
            os.close(dir_fd)

    def retire(self, directory: str, inputs: list[str], temp: str) -> None:
        dir_fd = open_lake_dir(self.lake, directory.split("/"))
        try:
            for name in inputs:  # the temporary file was renamed
                with suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dir_fd)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remove_journal(self, name: str) -> None:
        journal_fd = open_lake_dir(self.lake, JOURNAL_DIR)
        try:
            os.unlink(name, dir_fd=journal_fd)
            os.fsync(journal_fd)
        finally:
            os.close(journal_fd)


def run_cli(args: object, settings: object) -> int:
    """``modelmeter compact [--before DATE] [--settle-hours H] [--target-mb N]``."""
    import math
    import sys

    # a negative settle time would compact today and the files a consumer has just written,
    # uncommitted flushes included (see the module docstring): refused, as are NaN and inf
    settle_hours = float(getattr(args, "settle_hours", 2.0))
    if not math.isfinite(settle_hours) or settle_hours < 0:
        raise ConfigError(f"--settle-hours must be a number >= 0, got {settle_hours}")
    target_mb = float(getattr(args, "target_mb", 128))
    if not math.isfinite(target_mb) or target_mb <= 0:
        raise ConfigError(f"--target-mb must be a number > 0, got {target_mb}")
    before = getattr(args, "before", None)
    try:
        before_day = dt.date.fromisoformat(before) if before else None
    except ValueError:
        raise ConfigError(f"--before must be a date YYYY-MM-DD, got {before!r}") from None
    settings.apply_umask()  # type: ignore[attr-defined]
    result = compact_lake(
        settings.lake,  # type: ignore[attr-defined]
        before=before_day,
        settle=dt.timedelta(hours=settle_hours),
        target_bytes=int(target_mb * 1024 * 1024),
    )
    print(
        f"compact: {result.runs} runs, {result.files_removed} files -> {result.files_written}"
        f" ({result.rows} rows); {result.journals_replayed} cut-short compactions finished,"
        f" {result.temp_removed} temporary files removed, {len(result.skipped)} runs skipped,"
        f" {result.covered_removed} covered files removed",
        file=sys.stderr,
    )
    return 0
