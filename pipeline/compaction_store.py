"""Where ``modelmeter compact`` reads and writes: the storage half of :mod:`pipeline.compaction`.

:mod:`pipeline.compaction` holds the algorithm (runs, verification, journal, replay) once; it
reaches the lake only through a :class:`Store`: the local one (in :mod:`pipeline.compaction`,
renames and fsyncs) or :class:`BucketStore` here, for a lake in an S3 bucket
(:class:`~pipeline.object_lake.ObjectLake`). Directories are named relative to the lake,
``<table>/<key>=<day>``.

On a bucket there is no rename and no file lock:

* a temporary file is one object ``<dir>/.compact-<name>.partial`` (one PUT: whole or
  absent; never matched by a reader, which takes ``*.parquet`` not starting with a dot);
* the journal is one object ``_index/compaction/<name>.json`` (one PUT: the commit point);
* publishing a file is a server-side copy (S3 CopyObject) of its temporary object to its
  final name, then the inputs and the temporary object are deleted;
* the lock is an object ``_index/compaction/compact.lock`` naming its owner (host, pid) and
  refreshed every minute while the compaction runs. A lock refreshed less than
  :data:`LOCK_TTL_SECONDS` ago makes a second compaction exit with an error; an older one
  (its owner was killed) is taken over. S3 has no create-if-absent here, so the lock is
  best-effort (written, then read back :data:`LOCK_CONFIRM_SECONDS` later: the later of two
  compactions started in the same second gives way); only one scheduled job may compact a
  bucket.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline._exceptions import LakeWriteError
from pipeline.lake import FileName, write_parquet
from pipeline.lake_files import EVENT_TABLES, REJECTED_TABLE
from pipeline.object_lake import ObjectLake

__all__ = [
    "BucketStore",
    "COMPACT_PREFIX",
    "Flushes",
    "JOURNAL_DIR",
    "LOCK_NAME",
    "LOCK_TTL_SECONDS",
    "Store",
    "StoredFile",
    "TABLES",
    "temp_name",
]

log = logging.getLogger(__name__)

JOURNAL_DIR = ("_index", "compaction")
COMPACT_PREFIX = ".compact-"
LOCK_NAME = "compact.lock"
TABLES = (*EVENT_TABLES, REJECTED_TABLE)
#: A bucket's lock not refreshed for this long belongs to a compaction that is gone.
LOCK_TTL_SECONDS = 600.0
#: How often a running compaction refreshes its lock object.
LOCK_REFRESH_SECONDS = 60.0
#: Pause between writing the lock object and reading it back (two starts racing).
LOCK_CONFIRM_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class StoredFile:
    directory: str  # "<table>/<key>=<day>", relative to the lake
    day: dt.date
    name: FileName
    bytes: int
    mtime_ns: int


#: (topic, partition) -> flush name -> its files (every table, every day)
Flushes = dict[tuple[str, int], dict[FileName, list[StoredFile]]]


def temp_name(final: str) -> str:
    """The temporary name of the compacted file ``final`` (in its directory)."""
    return f"{COMPACT_PREFIX}{final}.partial"


def new_flushes() -> Flushes:
    return defaultdict(lambda: defaultdict(list))


class Store(Protocol):
    """What the compaction needs of a lake (every method idempotent where a replay calls it)."""

    def locked(self) -> AbstractContextManager[None]:
        """Held for the whole compaction; LakeWriteError when another one holds it."""

    def journals(self) -> list[dict[str, Any]]:
        """The journals of committed runs not finished, by name."""

    def remove_temps(self) -> int:
        """Remove the temporary files of runs cut short before their journal; how many."""

    def flushes(self) -> Flushes:
        """Every lake file, by Kafka partition and flush."""

    def complete(self, name: FileName, files: list[StoredFile]) -> bool:
        """True when ``files`` hold ``name``'s offsets' count of rows (and all read)."""

    def read(self, directory: str, name: str) -> pa.Table:
        """The rows of one file (OSError when it is gone)."""

    def write_temp(self, directory: str, temp: str, table: pa.Table) -> None:
        """Write ``table`` durably under the temporary name ``temp``."""

    def discard(self, directory: str, name: str) -> None:
        """Remove one temporary file (nothing when it is gone)."""

    def write_journal(self, name: str, body: bytes) -> None:
        """Write the journal ``name`` whole or not at all: the run's commit point."""

    def publish(self, directory: str, temp: str, final: str) -> bool:
        """Put the verified ``temp`` in place as ``final``; True when ``final`` is there."""

    def retire(self, directory: str, inputs: list[str], temp: str) -> None:
        """Remove a published run's ``inputs`` in ``directory`` (and ``temp`` if still there)."""

    def remove_journal(self, name: str) -> None:
        """Remove the journal ``name``: the run is finished."""


class BucketStore:
    """The :class:`Store` of a lake in an S3 bucket."""

    def __init__(self, lake: ObjectLake) -> None:
        self.lake = lake

    def _path(self, directory: str, name: str) -> PurePosixPath:
        return self.lake.path(*directory.split("/"), name)

    def _journal(self, name: str) -> PurePosixPath:
        return self.lake.path(*JOURNAL_DIR, name)

    # -- the lock -------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        path = self._journal(LOCK_NAME)
        held = _parse_lock(self.lake.get_bytes(path))
        if held is not None and time.time() - held["refreshed"] < LOCK_TTL_SECONDS:
            raise self._busy(held)
        token = uuid.uuid4().hex
        owner = f"{socket.gethostname()}:{os.getpid()}"
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

        def write() -> None:
            body = {"owner": owner, "token": token, "started": started, "refreshed": time.time()}
            self.lake.put_bytes(path, json.dumps(body).encode())

        if held is not None:
            log.warning("compact: taking over the stale lock of %s", held.get("owner"))
        write()
        time.sleep(LOCK_CONFIRM_SECONDS)
        now_held = _parse_lock(self.lake.get_bytes(path))
        if now_held is None or now_held.get("token") != token:
            raise self._busy(now_held or {})
        stop = threading.Event()

        def refresh() -> None:
            while not stop.wait(LOCK_REFRESH_SECONDS):
                try:
                    write()
                except LakeWriteError as exc:  # the main thread meets the same store
                    log.warning("compact: could not refresh the lock: %s", exc)

        thread = threading.Thread(target=refresh, name="compact-lock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            last = _parse_lock(self.lake.get_bytes(path))
            if last is not None and last.get("token") == token:
                self.lake.delete(path)

    def _busy(self, held: dict[str, Any]) -> LakeWriteError:
        return LakeWriteError(
            f"another compaction of this lake is running ({held.get('owner', 'unknown')},"
            f" started {held.get('started', '?')}): its lock object"
            f" {self.lake}/{'/'.join(JOURNAL_DIR)}/{LOCK_NAME} expires"
            f" {LOCK_TTL_SECONDS / 60:.0f} minutes after its last refresh"
        )

    # -- listings -------------------------------------------------------------------------
    def _table_objects(self) -> Iterator[tuple[str, str, int, int]]:
        """(directory, name, bytes, mtime_ns) of every object in a partition directory."""
        for table in TABLES:
            for path, size, mtime in self.lake.partition_objects(table):
                yield f"{table}/{path.parent.name}", path.name, size, mtime

    def journals(self) -> list[dict[str, Any]]:
        root = self.lake.path(*JOURNAL_DIR)
        names = sorted(
            path.name
            for path, _, _ in self.lake.files("/".join(JOURNAL_DIR))
            if path.parent == root and path.name.endswith(".json") and path.name[0] != "."
        )
        found = []
        for name in names:
            body = self.lake.get_bytes(self._journal(name))
            if body is not None:  # else finished meanwhile: only one compaction runs
                found.append(json.loads(body))
        return found

    def remove_temps(self) -> int:
        removed = 0
        for directory, name, _, _ in list(self._table_objects()):
            if name.startswith(COMPACT_PREFIX):
                self.lake.delete(self._path(directory, name))
                removed += 1
        return removed

    def flushes(self) -> Flushes:
        found = new_flushes()
        for directory, name, size, mtime in self._table_objects():
            parsed = FileName.parse(name)
            if parsed is None:
                continue
            try:
                day = dt.date.fromisoformat(directory.split("=", 1)[1])
            except ValueError:
                continue
            found[(parsed.topic, parsed.partition)][parsed].append(
                StoredFile(directory, day, parsed, size, mtime)
            )
        return found

    # -- files ----------------------------------------------------------------------------
    def complete(self, name: FileName, files: list[StoredFile]) -> bool:
        counts = [self.lake.num_rows(self._path(f.directory, str(name))) for f in files]
        return min(counts) >= 0 and sum(counts) == name.last_offset - name.first_offset + 1

    def read(self, directory: str, name: str) -> pa.Table:
        path = self._path(directory, name)
        body = self.lake.get_bytes(path)
        if body is None:
            raise FileNotFoundError(str(path))
        return pq.ParquetFile(pa.BufferReader(body)).read()

    def write_temp(self, directory: str, temp: str, table: pa.Table) -> None:
        buffer = io.BytesIO()
        write_parquet(table, buffer)
        self.lake.put_bytes(self._path(directory, temp), buffer.getvalue())

    def discard(self, directory: str, name: str) -> None:
        self.lake.delete(self._path(directory, name))

    def write_journal(self, name: str, body: bytes) -> None:
        self.lake.put_bytes(self._journal(name), body)

    def publish(self, directory: str, temp: str, final: str) -> bool:
        with_temp = self.lake.exists(self._path(directory, temp))
        if with_temp:  # else copied before a crash (and the temporary object deleted)
            self.lake.copy(self._path(directory, temp), self._path(directory, final))
        return self.lake.exists(self._path(directory, final))

    def retire(self, directory: str, inputs: list[str], temp: str) -> None:
        for name in inputs:
            self.lake.delete(self._path(directory, name))
        self.lake.delete(self._path(directory, temp))

    def remove_journal(self, name: str) -> None:
        self.lake.delete(self._journal(name))


def _parse_lock(body: bytes | None) -> dict[str, Any] | None:
    """The lock object's content; an unreadable one counts as stale (refreshed at 0)."""
    if body is None:
        return None
    try:
        held = json.loads(body)
        held["refreshed"] = float(held["refreshed"])
        return dict(held)
    except (ValueError, KeyError, TypeError):
        return {"owner": "unknown", "refreshed": 0.0}
