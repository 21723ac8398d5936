"""Lake growth: what a partition assignment's recovery costs on a lake of many small files,
listing the whole lake (no index) and through the per-partition index; and, with
``--compact``, ``modelmeter compact`` then ``build --full`` on the same lake.

    .venv/bin/python bench/lake_growth.py --workdir /tmp/growth --out bench/lake_growth.json

The lake is generated with the consumer's naming (bench/gen_lake.py) in flushes of
``--flush-events`` messages, so that ``--events`` over ``--days`` make many small files.
The partition indexes are written as the consumer's lake writer would have written them
(bounds with the writer's headroom). Every recovery is given each partition's end offset as
its committed offset (the usual rebalance: nothing to delete), and is timed over all
partitions, the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gen_lake import PARTITIONS, TOPIC, generate_lake  # noqa: E402
from pipeline.consumer.recovery import recover_partition  # noqa: E402
from pipeline.consumer.sink import INDEX_HEADROOM_FLUSHES  # noqa: E402
from pipeline.lake_files import INDEX_DIR, partition_files, update_partition_index  # noqa: E402


def _files(lake: Path) -> int:
    return sum(1 for _ in lake.glob("*/*/*.parquet"))


def _end_offsets(lake: Path) -> dict[int, int]:
    return {
        p: max((n.last_offset for _, n in partition_files(lake, TOPIC, p)), default=-1) + 1
        for p in range(PARTITIONS)
    }


def _write_indexes(lake: Path, flush_events: int) -> None:
    """Each partition's index as its writer leaves it: per directory, the last offset
    written there plus the headroom of the flush size."""
    shutil.rmtree(lake / INDEX_DIR[0], ignore_errors=True)
    for p in range(PARTITIONS):
        bounds: dict[str, int] = {}
        for path, name in partition_files(lake, TOPIC, p):
            relative = f"{path.parent.parent.name}/{path.parent.name}"
            bound = name.last_offset + flush_events * INDEX_HEADROOM_FLUSHES
            bounds[relative] = max(bound, bounds.get(relative, -1))
        update_partition_index(lake, TOPIC, p, bounds)


def _recover_all(lake: Path, ends: dict[int, int]) -> tuple[float, int]:
    """Seconds to recover every partition, and how many directories the index made them list
    (-1: the whole lake was listed)."""
    started = time.perf_counter()
    listed = 0
    for p, end in ends.items():
        rec = recover_partition(lake, TOPIC, p, end)
        if rec.deleted:
            raise SystemExit(f"partition {p}: recovery deleted {len(rec.deleted)} files")
        listed = -1 if rec.indexed_dirs is None or listed < 0 else listed + len(rec.indexed_dirs)
    return time.perf_counter() - started, listed


def measure_recovery(lake: Path, flush_events: int, repeat: int) -> dict:
    ends = _end_offsets(lake)
    full = []
    for _ in range(repeat):
        shutil.rmtree(lake / INDEX_DIR[0], ignore_errors=True)
        full.append(_recover_all(lake, ends)[0])
    _write_indexes(lake, flush_events)
    indexed = []
    listed = 0
    for _ in range(repeat):
        seconds, listed = _recover_all(lake, ends)
        indexed.append(seconds)
    return {
        "files": _files(lake),
        "partitions": PARTITIONS,
        "recover_all_partitions_whole_lake_s": round(min(full), 4),
        "recover_all_partitions_indexed_s": round(min(indexed), 4),
        "directories_listed_through_the_index": listed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--flush-events", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep a lake already generated")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    lake = args.workdir / "lake"
    generated = None
    if not (args.reuse and lake.is_dir()):
        shutil.rmtree(lake, ignore_errors=True)
        started = time.perf_counter()
        generate_lake(
            lake,
            events=args.events,
            days=args.days,
            last_day=dt.date(2025, 6, 30),
            flush_events=args.flush_events,
            progress=False,
        )
        generated = round(time.perf_counter() - started, 1)
    result = {
        "events": args.events,
        "days": args.days,
        "flush_events": args.flush_events,
        "generate_s": generated,
        "recovery": measure_recovery(lake, args.flush_events, args.repeat),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
