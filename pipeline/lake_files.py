"""Lake file names and paths (the layout of :mod:`pipeline.lake`), without pyarrow.

The consumer's poller needs these to recover a partition's files on assignment
(:mod:`pipeline.consumer.recovery`); keeping pyarrow out of them keeps ~40 MB and ~0.1 s of
start-up out of the poller process (the lake writer process imports pyarrow itself).
:mod:`pipeline.lake` re-exports everything here.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EVENT_TABLES", "REJECTED_TABLE", "TEMP_PREFIX", "FileName", "partition_dir",
           "fsync_path", "clean_temp_files", "partition_files"]

EVENT_TABLES = ("llm_call", "task_feedback")
REJECTED_TABLE = "_rejected"
TEMP_PREFIX = ".tmp-"

_NAME = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})\.parquet$")


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


def partition_dir(lake: Path, table: str, day: dt.date) -> Path:
    """Directory of one day of ``table``. ``day`` is a validated date, never a raw event value."""
    if table not in (*EVENT_TABLES, REJECTED_TABLE):
        raise ValueError(f"unknown lake table {table!r}")
    if not isinstance(day, dt.date):
        raise TypeError("day must be a datetime.date")
    key = "received_date" if table == REJECTED_TABLE else "event_date"
    return Path(lake) / table / f"{key}={day.isoformat()}"


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory after a rename makes the new name durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_temp_files(lake: Path, *, topic: str | None = None, partition: int | None = None) -> int:
    """Remove temporary files left by a process that died mid-write; returns how many.

    With ``topic`` and ``partition``, only the temporary files of that Kafka partition (so a
    consumer never removes a file another consumer of the group is writing right now).
    """
    removed = 0
    root = Path(lake)
    if not root.exists():
        return 0
    pattern = f"{TEMP_PREFIX}*"
    if topic is not None and partition is not None:
        pattern = f"{TEMP_PREFIX}*-{topic}+{partition}+*"
    for tmp in root.glob(f"*/*/{pattern}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def partition_files(lake: Path, topic: str, partition: int) -> list[tuple[Path, FileName]]:
    """Every lake file (all tables, all days) written from one Kafka partition of ``topic``."""
    root = Path(lake)
    if not root.exists():
        return []
    out = []
    for path in root.glob(f"*/*/{topic}+{partition}+*.parquet"):
        name = FileName.parse(path.name)
        if name is not None and name.topic == topic and name.partition == partition:
            out.append((path, name))
    return sorted(out, key=lambda item: (item[1].first_offset, str(item[0])))

