"""Crash recovery of one Kafka partition's lake files, run when the partition is assigned.

The rule (see the package docstring): a flush writes its files first and commits
``last + 1`` only after every file is durable and its dead letters are acknowledged. So
with committed offset ``C``:

* a file with ``first_offset >= C`` belongs to a flush whose commit never happened: it is
  deleted and its offsets are consumed (and written under the same or another name) again;
* a file with ``first_offset < C <= last_offset`` cannot come from this consumer (commits
  follow complete flushes); it is kept, logged, and consumption resumes after it so that
  nothing is written twice;
* dot-prefixed temporary files of the partition (a write cut short) are removed.

With no committed offset (a new group on an existing lake, or a crash before the first
commit) the lake itself says where to resume: flushes whose files together hold exactly
``last - first + 1`` rows are complete and kept, incomplete ones are deleted, and
consumption resumes after the last complete flush. That flush may have been written
without its dead letters reaching the DLQ (a crash between the two): its ``_rejected`` files
are listed in :attr:`Recovery.redeliver` and the consumer dead-letters them again before
reading on, so ``_rejected`` and the DLQ agree (an earlier flush of the partition finished
its dead letters before the next one was written).

What is listed: with a committed offset ``C`` and the partition's index
(:func:`~pipeline.lake_files.read_partition_index`, written ahead of every flush's files),
only the directories whose bound is ``>= C`` (today's, and those a recent flush wrote late
events into): every file the rule above deletes or keeps straddling has
``last_offset >= C``, so it is there. An assignment then costs the same on a year-old lake
as on a day-old one. Without a committed offset or an index (a lake written before
indexes), the whole lake is listed, and the index is written from what was found.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

from pipeline.lake_files import (
    INDEX_DIR,
    REJECTED_TABLE,
    FileName,
    Lake,
    clean_temp_files,
    partition_files,
    read_partition_index,
    remove_lake_file,
    update_partition_index,
)
from pipeline.object_lake import ObjectLake

__all__ = ["Recovery", "recover_partition"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Recovery:
    """What recovery did for one partition and where consumption must start."""

    partition: int
    committed: int | None
    position: int | None  # offset to seek to; None = the committed offset / auto reset
    deleted: list[PurePath] = field(default_factory=list)
    temp_removed: int = 0
    straddling: list[FileName] = field(default_factory=list)
    # _rejected files of a kept flush that was never committed: to dead-letter again
    redeliver: list[PurePath] = field(default_factory=list)
    # directories listed through the partition's index; None: the whole lake was listed
    indexed_dirs: list[str] | None = None


def _rows(lake: Lake, path: PurePath) -> int:
    if isinstance(lake, ObjectLake):
        return lake.num_rows(PurePosixPath(path))
    # pyarrow only here (a lake without a committed offset): the poller process runs this
    # and otherwise never loads pyarrow
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(Path(path)).num_rows
    except Exception:  # unreadable footer: not a complete file
        return -1


def recover_partition(lake: Lake, topic: str, partition: int, committed: int | None) -> Recovery:
    """Make the lake files of (``topic``, ``partition``) agree with ``committed``."""
    result = Recovery(partition, committed, None)
    index = read_partition_index(lake, topic, partition) if committed is not None else None
    if index is not None and committed is not None:
        dirs = sorted(d for d, bound in index.items() if bound >= committed)
        result.indexed_dirs = dirs
        result.temp_removed = clean_temp_files(
            lake, topic=topic, partition=partition, dirs=[*dirs, "/".join(INDEX_DIR)]
        )
        files = partition_files(lake, topic, partition, dirs=dirs)
    else:
        result.temp_removed = clean_temp_files(lake, topic=topic, partition=partition)
        files = partition_files(lake, topic, partition)
    if committed is None:
        by_name: dict[FileName, list[PurePath]] = defaultdict(list)
        for path, name in files:
            by_name[name].append(path)
        complete = [
            name
            for name, paths in by_name.items()
            if sum(_rows(lake, p) for p in paths) == name.last_offset - name.first_offset + 1
        ]
        if complete:
            last = max(complete, key=lambda name: name.last_offset)
            committed = last.last_offset + 1
            result.position = committed
            result.redeliver = [p for p in by_name[last] if p.parent.parent.name == REJECTED_TABLE]
        else:
            committed = 0
    for path, name in files:
        if name.first_offset >= committed:
            remove_lake_file(lake, path)
            result.deleted.append(path)
        elif name.last_offset >= committed:
            result.straddling.append(name)
    if result.straddling:
        resume = max(name.last_offset for name in result.straddling) + 1
        log.warning(
            "partition %s: lake files %s cover offsets past the committed offset %s; "
            "they are kept and consumption resumes at %s",
            partition,
            sorted({str(n) for n in result.straddling}),
            committed,
            resume,
        )
        result.position = resume
    if index is None:  # listed in full: index what is kept, so that the next one need not
        kept: dict[str, int] = {}
        for path, name in files:
            if name.first_offset < committed:
                relative = f"{path.parent.parent.name}/{path.parent.name}"
                kept[relative] = max(name.last_offset, kept.get(relative, -1))
        update_partition_index(lake, topic, partition, kept)
    return result
