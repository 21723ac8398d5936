"""Lake file names and paths (the layout of :mod:`pipeline.lake`), without pyarrow.

Every function taking a ``lake`` takes a local directory (:class:`~pathlib.Path`) or an S3
bucket (:class:`~pipeline.object_lake.ObjectLake`, whose files are
:class:`~pathlib.PurePosixPath` ``bucket/prefix/...``).

The consumer's poller needs these to recover a partition's files on assignment
(:mod:`pipeline.consumer.recovery`); keeping pyarrow out of them keeps its memory and
start-up time out of the poller process (the lake writer process imports pyarrow itself).
:mod:`pipeline.lake` re-exports everything here.

Symbolic links: the lake root may be one (the operator's choice), nothing inside it is
followed. :func:`open_lake_dir` opens a table or partition directory component by component
with ``O_NOFOLLOW`` relative to its parent's descriptor (no check-then-open race: a link
swapped in at any moment is refused, a directory opened stays the one written to), and
:func:`clean_temp_files` / :func:`partition_files` never descend into a linked directory,
so recovery never lists or deletes a file outside the lake.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

from pipeline._exceptions import ConfigError, LakeWriteError
from pipeline.files import atomic_write, fsync_path
from pipeline.object_lake import ObjectLake

#: Where a lake lives: a local (or mounted) directory, or an S3 bucket and prefix.
Lake = Path | ObjectLake

__all__ = [
    "Lake",
    "covered",
    "local_lake",
    "prepare_lake",
    "remove_lake_file",
    "EVENT_TABLES",
    "REJECTED_TABLE",
    "TEMP_PREFIX",
    "FileName",
    "partition_dir",
    "fsync_path",
    "open_lake_dir",
    "clean_temp_files",
    "partition_files",
    "INDEX_DIR",
    "read_partition_index",
    "update_partition_index",
]

EVENT_TABLES = ("llm_call", "task_feedback")
REJECTED_TABLE = "_rejected"
TEMP_PREFIX = ".tmp-"

_NAME = re.compile(
    r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})\.parquet$"
)


@dataclass(frozen=True, slots=True)
class FileName:
    """The offsets-derived name of a lake file."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int

    def __str__(self) -> str:
        return f"{self.topic}+{self.partition}+{self.first_offset:020d}+{self.last_offset:020d}.parquet"

    @classmethod
    def parse(cls, name: str) -> FileName | None:
        """The FileName of ``name``, or None when it is not a lake file name."""
        m = _NAME.match(name)
        if not m:
            return None
        return cls(m["topic"], int(m["partition"]), int(m["first"]), int(m["last"]))


def covered(names: Iterable[tuple[str, FileName]]) -> set[tuple[str, FileName]]:
    """The (directory, name) pairs whose offsets another file of the same directory and Kafka
    partition covers. Such a file is never read: its rows are in the covering one (a compacted
    file and its inputs until they are removed, or the files of a flush written again by a
    partition's new owner after the old one had lost it)."""
    groups: dict[tuple[str, str, int], list[FileName]] = {}
    for directory, name in names:
        groups.setdefault((directory, name.topic, name.partition), []).append(name)
    out: set[tuple[str, FileName]] = set()
    for (directory, _, _), found in groups.items():
        reach = -1
        for name in sorted(found, key=lambda n: (n.first_offset, -n.last_offset)):
            if name.last_offset <= reach:
                out.add((directory, name))
            reach = max(reach, name.last_offset)
    return out


def partition_dir(lake: Lake, table: str, day: dt.date) -> PurePath:
    """Directory of one day of ``table``. ``day`` is a validated date, never a raw event value."""
    if table not in (*EVENT_TABLES, REJECTED_TABLE):
        raise ValueError(f"unknown lake table {table!r}")
    if not isinstance(day, dt.date):
        raise TypeError("day must be a datetime.date")
    key = "received_date" if table == REJECTED_TABLE else "event_date"
    if isinstance(lake, ObjectLake):
        return lake.path(table, f"{key}={day.isoformat()}")
    return Path(lake) / table / f"{key}={day.isoformat()}"


def prepare_lake(lake: Lake) -> None:
    """Make sure the consumer can write ``lake``: create the local directory, or check that
    the bucket exists and answers; :class:`~pipeline.LakeWriteError` otherwise."""
    if isinstance(lake, ObjectLake):
        lake.check()
        return
    try:
        lake.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LakeWriteError(
            f"cannot create the lake: {exc.strerror or exc}", path=str(lake)
        ) from None
    if not lake.is_dir():
        raise LakeWriteError("the lake is not a directory", path=str(lake))


def local_lake(lake: Lake, verb: str) -> Path:
    """``lake`` when it is a local directory; a :class:`~pipeline.ConfigError` (exit 2) naming
    ``verb`` when it is in object storage, which ``verb`` does not handle yet."""
    if isinstance(lake, ObjectLake):
        raise ConfigError(
            f"{verb} does not work on a lake in object storage yet ({lake}); run it on a local"
            " or mounted lake"
        )
    return Path(lake)


def remove_lake_file(lake: Lake, path: PurePath) -> None:
    """Delete one lake file (nothing when it is gone already)."""
    if isinstance(lake, ObjectLake):
        lake.delete(PurePosixPath(path))
    else:
        Path(path).unlink(missing_ok=True)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR_FLAGS = _DIR_FLAGS | os.O_NOFOLLOW


def open_lake_dir(lake: Path, parts: Sequence[str], *, create: bool = False) -> int:
    """A descriptor of the directory ``lake/<parts...>`` (close it), opened without following
    a symbolic link below ``lake``; with ``create``, missing directories are made (mode
    ``0o777`` less the umask) and their parent fsynced.

    A symbolic link where a directory of the lake should be raises
    :class:`~pipeline.LakeWriteError` naming it; other failures raise :class:`OSError`.
    """
    if create:
        Path(lake).mkdir(parents=True, exist_ok=True)
    fd = os.open(lake, _DIR_FLAGS)  # the root itself may be a link
    where = Path(lake)
    try:
        for part in parts:
            if not part or part in (".", "..") or os.sep in part:
                raise ValueError(f"bad lake path component {part!r}")
            where = where / part
            try:
                child = _open_child_dir(fd, part, create=create)
            except OSError as exc:
                if exc.errno == errno.ELOOP or _is_link(fd, part):
                    raise LakeWriteError(
                        "cannot write the lake: a symbolic link inside the lake is never"
                        " followed (only the lake root may be one)",
                        path=str(where),
                    ) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child_dir(parent_fd: int, name: str, *, create: bool) -> int:
    try:
        return os.open(name, _NOFOLLOW_DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o777, dir_fd=parent_fd)
    except FileExistsError:  # made meanwhile by another writer: open what is there
        pass
    else:
        os.fsync(parent_fd)  # the new directory's name is durable
    return os.open(name, _NOFOLLOW_DIR_FLAGS, dir_fd=parent_fd)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _walk_partitions(lake: Path) -> Iterator[tuple[Path, int]]:
    """(path, open descriptor) of every ``<table>/<partition>`` directory of the lake that is a
    real directory: linked directories are skipped, never followed. A descriptor is valid
    until the iteration moves on."""
    root = Path(lake)
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        for table in _subdirs(root_fd):
            try:
                table_fd = os.open(table, _NOFOLLOW_DIR_FLAGS, dir_fd=root_fd)
            except OSError:  # a link, or gone meanwhile
                continue
            try:
                for part in _subdirs(table_fd):
                    try:
                        part_fd = os.open(part, _NOFOLLOW_DIR_FLAGS, dir_fd=table_fd)
                    except OSError:
                        continue
                    try:
                        yield root / table / part, part_fd
                    finally:
                        os.close(part_fd)
            finally:
                os.close(table_fd)
    finally:
        os.close(root_fd)


def _listed_partitions(lake: Path, dirs: Sequence[str]) -> Iterator[tuple[Path, int]]:
    """Like :func:`_walk_partitions`, for the ``<table>/<partition>`` directories ``dirs``
    only (missing ones skipped; a link inside the lake is never followed)."""
    for relative in sorted(set(dirs)):
        parts = relative.split("/")
        try:
            fd = open_lake_dir(lake, parts)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            yield Path(lake).joinpath(*parts), fd
        finally:
            os.close(fd)


def _partitions(lake: Path, dirs: Sequence[str] | None) -> Iterator[tuple[Path, int]]:
    return _walk_partitions(lake) if dirs is None else _listed_partitions(lake, dirs)


def _subdirs(dir_fd: int) -> list[str]:
    """Names of the real (not linked) directories in ``dir_fd``."""
    with os.scandir(dir_fd) as entries:
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))


def _entries(dir_fd: int) -> list[os.DirEntry[str]]:
    with os.scandir(dir_fd) as entries:
        return list(entries)


def clean_temp_files(
    lake: Lake,
    *,
    topic: str | None = None,
    partition: int | None = None,
    dirs: Sequence[str] | None = None,
) -> int:
    """Remove temporary files left by a process that died mid-write; returns how many.

    With ``topic`` and ``partition``, only the temporary files of that Kafka partition (so a
    consumer never removes a file another consumer of the group is writing right now).
    ``dirs``: only these ``<table>/<partition>`` directories (relative to the lake), not
    the whole lake. Linked directories are not entered; a link named like a temporary file
    is removed (the link, not what it points to).
    """
    if isinstance(lake, ObjectLake):  # one PUT per file: no temporary object is ever made
        return 0
    removed = 0
    # a writer's temporary name: .tmp-<32 hex>-<topic>+<partition>+<first>+<last>.parquet.partial
    owner = f"{topic}+{partition}+" if topic is not None and partition is not None else None
    for _, part_fd in _partitions(lake, dirs):
        for entry in _entries(part_fd):
            if not entry.name.startswith(TEMP_PREFIX) or entry.is_dir(follow_symlinks=False):
                continue
            if owner is not None and not _temp_target(entry.name).startswith(owner):
                continue
            try:
                os.unlink(entry.name, dir_fd=part_fd)
            except FileNotFoundError:
                continue
            removed += 1
    return removed


def _temp_target(name: str) -> str:
    """The name a temporary file stands for: ``.tmp-<hex>-<name>.partial`` -> ``<name>.partial``."""
    return name[len(TEMP_PREFIX) :].partition("-")[2]


def partition_files(
    lake: Lake, topic: str, partition: int, *, dirs: Sequence[str] | None = None
) -> list[tuple[PurePath, FileName]]:
    """Every lake file (all tables, all days) written from one Kafka partition of ``topic``;
    with ``dirs``, those in these ``<table>/<partition>`` directories only.

    Regular files in real directories only: a symbolic link (to a directory or a file) is
    never followed, so nothing outside the lake is listed (and then read or deleted).
    """
    prefix = f"{topic}+{partition}+"
    out: list[tuple[PurePath, FileName]] = []
    if isinstance(lake, ObjectLake):
        for relative in sorted(set(dirs)) if dirs is not None else [""]:
            for path, _, _ in lake.partition_objects(relative):
                name = FileName.parse(path.name) if path.name.startswith(prefix) else None
                if name is not None and (name.topic, name.partition) == (topic, partition):
                    out.append((path, name))
        return sorted(out, key=lambda item: (item[1].first_offset, str(item[0])))
    for directory, part_fd in _partitions(lake, dirs):
        for entry in _entries(part_fd):
            if not entry.name.startswith(prefix) or not entry.is_file(follow_symlinks=False):
                continue
            name = FileName.parse(entry.name)
            if name is not None and name.topic == topic and name.partition == partition:
                out.append((directory / entry.name, name))
    return sorted(out, key=lambda item: (item[1].first_offset, str(item[0])))


# -- the per-partition index ----------------------------------------------------------------
#: Where the partition indexes live, relative to the lake (never a table the readers scan).
INDEX_DIR = ("_index", "partitions")


def _index_name(topic: str, partition: int) -> str:
    # named like the partition's files (``<topic>+<partition>+``), so that the temporary
    # file of a write cut short is the partition's to clean (:func:`clean_temp_files`)
    return f"{topic}+{partition}+index.json"


def read_partition_index(lake: Lake, topic: str, partition: int) -> dict[str, int] | None:
    """The index of one Kafka partition: ``<table>/<partition dir>`` (relative to the lake)
    -> an upper bound of the last offsets of the partition's files in that directory.

    Written ahead of every flush's files (:func:`update_partition_index`), so that every
    file of the partition with ``last_offset >= C`` lies in a directory whose bound is
    ``>= C``. None when there is no index (a lake written before indexes, or a partition
    never flushed) or it is unreadable: then only a listing of the whole lake is complete.
    """
    if isinstance(lake, ObjectLake):
        data = lake.get_bytes(lake.path(*INDEX_DIR, _index_name(topic, partition)))
        return None if data is None else _parse_index(data)
    try:
        dir_fd = open_lake_dir(lake, INDEX_DIR)
    except (OSError, LakeWriteError):
        return None
    try:
        fd = os.open(
            _index_name(topic, partition), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    return _parse_index(data)


def _parse_index(data: bytes) -> dict[str, int] | None:
    try:
        doc = json.loads(data)
        bounds = doc["dirs"]
        if doc.get("version") != 1 or not isinstance(bounds, dict):
            return None
        return {str(d): int(b) for d, b in bounds.items() if _is_index_dir(d)}
    except (ValueError, KeyError, TypeError):
        return None


def _is_index_dir(relative: object) -> bool:
    if not isinstance(relative, str):
        return False
    table, _, part = relative.partition("/")
    return table in (*EVENT_TABLES, REJECTED_TABLE) and "=" in part and "/" not in part


def update_partition_index(
    lake: Lake, topic: str, partition: int, bounds: dict[str, int]
) -> dict[str, int]:
    """Raise the bounds of ``bounds``' directories in the partition's index (never lower one)
    and write it atomically and durably; returns the index written.

    Only the partition's owner writes its index (the consumer that flushes it, or its
    recovery on assignment), so the read-merge-write needs no lock.
    """
    bad = [d for d in bounds if not _is_index_dir(d)]
    if bad:
        raise ValueError(f"not lake partition directories: {bad}")
    merged = read_partition_index(lake, topic, partition) or {}
    for relative, bound in bounds.items():
        merged[relative] = max(bound, merged.get(relative, -1))
    name = _index_name(topic, partition)
    body = json.dumps(
        {
            "version": 1,
            "topic": topic,
            "partition": partition,
            "dirs": dict(sorted(merged.items())),
        },
        indent=0,
    ).encode()
    if isinstance(lake, ObjectLake):  # one PUT replaces the object whole
        lake.put_bytes(lake.path(*INDEX_DIR, name), body)
        return merged
    dir_fd = open_lake_dir(lake, INDEX_DIR, create=True)
    try:
        temp = f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}.partial"
        with atomic_write(name, dir_fd=dir_fd, temp_name=temp) as fh:
            fh.write(body)
    finally:
        os.close(dir_fd)
    return merged
