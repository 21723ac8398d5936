"""bench/lake_growth.py: the many-files lake cut from the 12-files lake is the lake gen_lake
writes with small flushes (names, rows, offsets), and recovery is measured without deleting
anything."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq

from bench.gen_lake import generate_lake
from bench.lake_growth import (
    WHOLE_DAY_FLUSH,
    _differences,
    flush_for_files_per_day,
    measure_recovery,
    split_lake,
)

DAY = dt.date(2025, 6, 30)


def _lake(path: Path, flush: int) -> Path:
    generate_lake(path, events=600, days=2, last_day=DAY, flush_events=flush, progress=False)
    return path


def _names(lake: Path) -> list[str]:
    return sorted(p.relative_to(lake).as_posix() for p in lake.glob("*/*/*.parquet"))


def test_split_lake_is_gen_lake_with_small_flushes(tmp_path: Path) -> None:
    whole = _lake(tmp_path / "whole", WHOLE_DAY_FLUSH)
    assert len(_names(whole)) == 2 * 2 * 6  # tables x days x partitions
    small = _lake(tmp_path / "small", 7)
    written = split_lake(whole, tmp_path / "cut", 7, workers=1)
    cut = tmp_path / "cut"
    assert _names(cut) == _names(small)
    assert written == len(_names(small))
    for name in _names(small):
        assert pq.read_table(cut / name).equals(pq.read_table(small / name)), name


def test_flush_for_files_per_day_is_the_closest(tmp_path: Path) -> None:
    whole = _lake(tmp_path / "whole", WHOLE_DAY_FLUSH)
    flush, per_day = flush_for_files_per_day(whole, 40)
    cut = tmp_path / "cut"
    split_lake(whole, cut, flush, workers=1)
    assert len(_names(cut)) / 2 == per_day
    for other in (flush - 1, flush + 1):
        if other < 1:
            continue
        split_lake(whole, tmp_path / f"cut{other}", other, workers=1)
        assert abs(len(_names(tmp_path / f"cut{other}")) / 2 - 40) >= abs(per_day - 40)
    assert flush_for_files_per_day(whole, 1)[1] == 12  # one flush a partition and day


def test_measure_recovery_keeps_every_file(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "small", 7)
    before = _names(lake)
    result = measure_recovery(lake, 7, repeat=1)
    assert _names(lake) == before
    assert result["files"] == len(before)
    assert 0 < result["directories_listed_through_the_index"] <= 2 * 2 * 6


def test_differences_names_the_lake_and_table() -> None:
    same = {"t": [(1, "a")], "u": [(2,)]}
    assert _differences({"a": same, "b": dict(same)}) == []
    assert _differences({"a": same, "b": {"t": [(1, "a")], "u": [(3,)]}}) == ["b: u differs from a"]
