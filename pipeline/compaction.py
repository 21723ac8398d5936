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

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline._exceptions import ConfigError, LakeWriteError
from pipeline.files import NEW_FILE_FLAGS, atomic_write
from pipeline.lake import SCHEMAS, FileName, open_lake_dir, write_parquet
from pipeline.lake_files import EVENT_TABLES, REJECTED_TABLE

__all__ = ["CompactResult", "compact_lake", "JOURNAL_DIR", "COMPACT_PREFIX"]

log = logging.getLogger(__name__)

JOURNAL_DIR = ("_index", "compaction")
COMPACT_PREFIX = ".compact-"
DEFAULT_SETTLE = dt.timedelta(hours=2)
DEFAULT_TARGET_BYTES = 128 * 1024 * 1024
_TABLES = (*EVENT_TABLES, REJECTED_TABLE)


@dataclass
class CompactResult:
    runs: int = 0
    files_removed: int = 0
    files_written: int = 0
    rows: int = 0
    journals_replayed: int = 0
    temp_removed: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _File:
    directory: str  # "<table>/<key>=<day>", relative to the lake
    day: dt.date
    name: FileName
    bytes: int
    mtime_ns: int


def compact_lake(
    lake: Path,
    *,
    before: dt.date | None = None,
    settle: dt.timedelta = DEFAULT_SETTLE,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    now: dt.datetime | None = None,
) -> CompactResult:
    """Compact the settled days of ``lake`` (those before ``before`` too, when given)."""
    lake = Path(lake)
    result = CompactResult()
    if not lake.is_dir():
        return result
    horizon = (now or dt.datetime.now(dt.UTC)) - settle
    last_day = horizon.date()  # days before it ended ``settle`` ago
    if before is not None:
        last_day = min(last_day, before)
    with _locked(lake):
        result.journals_replayed = _replay_journals(lake)
        result.temp_removed = _remove_temps(lake)
        flushes = _flushes(lake)
        for (topic, partition), named in sorted(flushes.items()):
            for run in _runs(lake, named, last_day, int(horizon.timestamp() * 1e9), target_bytes):
                try:
                    _compact_run(lake, topic, partition, run, result)
                except _Skip as exc:
                    log.warning("compact: %s", exc)
                    result.skipped.append(str(exc))
    return result


class _Skip(Exception):
    """A run left as it is (its files are untouched)."""


@contextmanager
def _locked(lake: Path) -> Iterator[None]:
    fd = open_lake_dir(lake, JOURNAL_DIR, create=True)
    try:
        lock = os.open("compact.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeWriteError(
                "another compaction of this lake is running", path=str(lake)
            ) from None
        yield
    finally:
        os.close(lock)


def _flushes(lake: Path) -> dict[tuple[str, int], dict[FileName, list[_File]]]:
    found: dict[tuple[str, int], dict[FileName, list[_File]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for table in _TABLES:
        table_dir = lake / table
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
                    _File(f"{table}/{part.name}", day, name, stat.st_size, stat.st_mtime_ns)
                )
    return found


def _complete(lake: Path, name: FileName, files: list[_File]) -> bool:
    try:
        rows = sum(pq.read_metadata(lake / f.directory / str(name)).num_rows for f in files)
    except (OSError, pa.ArrowException):
        return False
    return rows == name.last_offset - name.first_offset + 1


def _runs(
    lake: Path,
    named: dict[FileName, list[_File]],
    last_day: dt.date,
    horizon_ns: int,
    target_bytes: int,
) -> Iterator[list[tuple[FileName, list[_File]]]]:
    run: list[tuple[FileName, list[_File]]] = []
    run_day: dt.date | None = None
    run_bytes = 0
    for name in sorted(named, key=lambda n: (n.first_offset, n.last_offset)):
        files = named[name]
        day = max(f.day for f in files)
        size = sum(f.bytes for f in files)
        settled = (
            all(f.day < last_day and f.mtime_ns < horizon_ns for f in files)
            and (not run or name.first_offset > run[-1][0].last_offset)
            and _complete(lake, name, files)
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
    lake: Path,
    topic: str,
    partition: int,
    run: list[tuple[FileName, list[_File]]],
    result: CompactResult,
) -> None:
    target = FileName(topic, partition, run[0][0].first_offset, run[-1][0].last_offset)
    inputs: dict[str, list[str]] = defaultdict(list)
    for flush, files in run:
        for f in files:
            inputs[f.directory].append(str(flush))
    temp = f"{COMPACT_PREFIX}{target}.partial"
    con = duckdb.connect()
    written: list[str] = []
    rows = 0
    try:
        for directory, names in sorted(inputs.items()):
            schema = SCHEMAS[directory.split("/")[0]]
            parts = []
            for input_name in names:
                data = pq.ParquetFile(lake / directory / input_name).read()
                if not data.schema.equals(schema, check_metadata=False):
                    raise _Skip(f"{directory}/{input_name}: not the lake schema; run {target} left")
                parts.append(data)
            table = pa.concat_tables(parts)
            table = table.take(pc.sort_indices(table["kafka_offset"]))
            expected = _checksum(con, table)
            _write_temp(lake, directory, temp, table)
            written.append(directory)
            back = pq.ParquetFile(lake / directory / temp).read()
            if _checksum(con, back) != expected:
                raise _Skip(f"{directory}/{temp}: read back different rows; run {target} left")
            rows += expected[0]
    except BaseException:
        for directory in written:
            (lake / directory / temp).unlink(missing_ok=True)
        raise
    finally:
        con.close()
    journal = {"version": 1, "name": str(target), "dirs": dict(sorted(inputs.items()))}
    journal_fd = open_lake_dir(lake, JOURNAL_DIR, create=True)
    try:
        with atomic_write(f"{target}.json", dir_fd=journal_fd) as fh:
            fh.write(json.dumps(journal).encode())
    finally:
        os.close(journal_fd)
    _finish(lake, journal)
    result.runs += 1
    result.rows += rows
    result.files_written += len(inputs)
    result.files_removed += sum(len(names) for names in inputs.values())


def _write_temp(lake: Path, directory: str, temp: str, table: pa.Table) -> None:
    dir_fd = open_lake_dir(lake, directory.split("/"))
    try:
        fd = os.open(temp, NEW_FILE_FLAGS, 0o666, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as fh:
            write_parquet(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        os.close(dir_fd)


def _finish(lake: Path, journal: dict) -> None:
    """Rename a journal's new files into place, remove their inputs, then the journal
    (idempotent: a replay after a crash at any step ends the same)."""
    final = str(journal["name"])
    temp = f"{COMPACT_PREFIX}{final}.partial"
    for directory, names in journal["dirs"].items():
        dir_fd = open_lake_dir(lake, str(directory).split("/"))
        try:
            with suppress(FileNotFoundError):  # else renamed before a crash
                os.replace(temp, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            try:
                os.stat(final, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                log.error("compact: %s/%s is missing; its inputs are kept", directory, final)
                continue
            os.fsync(dir_fd)
            for name in names:
                if name != final:
                    with suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dir_fd)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    journal_fd = open_lake_dir(lake, JOURNAL_DIR)
    try:
        os.unlink(f"{final}.json", dir_fd=journal_fd)
        os.fsync(journal_fd)
    finally:
        os.close(journal_fd)


def _replay_journals(lake: Path) -> int:
    fd = open_lake_dir(lake, JOURNAL_DIR, create=True)
    try:
        names = sorted(n for n in os.listdir(fd) if n.endswith(".json") and n[0] != ".")
    finally:
        os.close(fd)
    for name in names:
        journal = json.loads((lake.joinpath(*JOURNAL_DIR) / name).read_bytes())
        log.warning("compact: finishing %s, cut short", journal["name"])
        _finish(lake, journal)
    return len(names)


def _remove_temps(lake: Path) -> int:
    """Temporary files of compactions cut short before their journal (journals replayed)."""
    removed = 0
    for path in [*lake.glob(f"*/*/{COMPACT_PREFIX}*"), *lake.glob("_index/compaction/.*")]:
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


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
        Path(settings.lake),  # type: ignore[attr-defined]
        before=before_day,
        settle=dt.timedelta(hours=settle_hours),
        target_bytes=int(target_mb * 1024 * 1024),
    )
    print(
        f"compact: {result.runs} runs, {result.files_removed} files -> {result.files_written}"
        f" ({result.rows} rows); {result.journals_replayed} cut-short compactions finished,"
        f" {result.temp_removed} temporary files removed, {len(result.skipped)} runs skipped",
        file=sys.stderr,
    )
    return 0
