"""The ``lake_s3`` figure: landing into a bucket side by side with landing into a directory.

bench/run.py calls :func:`run_lake_s3` inside its private broker:

1. an S3 server of our own: S3Proxy (filesystem backend) started by the project's
   ops/s3/s3proxy.sh on a free loopback port with a data dir in the work directory
   (tests/fixtures/s3_server.py ``LocalS3``, the tests' own wrapper of the script, with the
   script's default JVM settings), never a developer's server on 9000; stopped at the end,
   also on failure; warmed up before the clock (:func:`warm_s3`: 100 PUTs and GETs of 64 KB
   in a throwaway bucket), as the broker's group coordinator is;
2. N events pre-produced once to a fresh topic (:func:`bench.ingest.fill_topic`);
3. ``--rounds`` times, the order alternated: ``modelmeter consume --until-idle`` into a fresh
   local lake directory (one consumer group) and into ``s3://<fresh bucket>/lake`` (another
   group), each a subprocess timed from start to exit (:func:`bench.common.run_timed`: the
   same clock as ``ingest``), with the consumer's default flush settings passed explicitly;
   best run of each side; landed events/s = N / wall seconds; goal bucket >= 0.7 x local;
4. both lakes checked: every offset exactly once (the local one with
   :func:`bench.common.lake_counts`, the bucket through the S3 API with pyarrow), the same
   rows per table; objects and bytes written on each side;
5. informational: ``modelmeter build --full`` from each lake into a fresh warehouse,
   alternated, best of ``--rounds``, and the two warehouses' ``daily_cost_by_role`` compared
   row by row.

Both lakes are on the same disk (the S3 server's buckets are directories in the work
directory). The S3 side's wall time also pays the S3 server's CPU on the same cores
(``s3proxy_cpu_seconds``).
"""

from __future__ import annotations

import inspect
import os
import time
import uuid
from pathlib import Path

from bench.build import _build_argv
from bench.common import command_text, log, rel, run_timed
from bench.ingest import _check_lake, consume_argv, fill_topic

__all__ = ["run_lake_s3", "GOAL"]

#: bucket / local landed events/s
GOAL = 0.7
#: ``--until-idle``: the consumer stops after the first empty poll (1 s) once the broker
#: confirms that nothing is left; the same tail on both sides
UNTIL_IDLE = 0.5
TABLES = ("llm_call", "task_feedback", "_rejected")


def flush_settings() -> dict:
    """The consumer's defaults (``modelmeter consume`` without flush options)."""
    from pipeline.consumer.loop import Consumer
    from pipeline.consumer.sink import Sink

    consumer = inspect.signature(Consumer.__init__).parameters
    sink = inspect.signature(Sink.__init__).parameters
    return {
        "flush_events": consumer["flush_events"].default,
        "flush_seconds": consumer["flush_seconds"].default,
        "max_buffer_bytes": sink["max_buffer_bytes"].default,
        "write_threads": sink["write_threads"].default,
    }


def _local_objects(lake: Path) -> dict:
    files = [p for p in lake.rglob("*") if p.is_file()]
    data = [p for p in files if p.suffix == ".parquet"]
    return {
        "objects": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "parquet_files": len(data),
        "parquet_bytes": sum(p.stat().st_size for p in data),
    }


def _s3_lake(fs, root: str) -> tuple[dict, dict]:
    """(objects, counts) of the lake at pyarrow S3 path ``root`` (``bucket/lake``), read
    through the S3 API: rows per table and distinct (partition, offset), as lake_counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    key_schema = pa.schema([("kafka_partition", pa.int64()), ("kafka_offset", pa.int64())])
    infos = [
        i
        for i in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        if i.type == pafs.FileType.File
    ]
    data = [i for i in infos if i.path.endswith(".parquet")]
    objects = {
        "objects": len(infos),
        "bytes": sum(i.size for i in infos),
        "parquet_files": len(data),
        "parquet_bytes": sum(i.size for i in data),
    }
    counts: dict[str, int] = {}
    keys = []
    for table in TABLES:
        paths = [i.path for i in data if i.path.startswith(f"{root}/{table}/")]
        tables = [
            pq.read_table(p, columns=["kafka_partition", "kafka_offset"], filesystem=fs)
            for p in paths
        ]
        counts[table] = sum(t.num_rows for t in tables)
        keys += [t.cast(key_schema) for t in tables]
    counts["distinct_offsets"] = (
        pa.concat_tables(keys).group_by(["kafka_partition", "kafka_offset"]).aggregate([]).num_rows
        if keys
        else 0
    )
    counts["temp_files"] = sum(1 for i in infos if i.base_name.startswith("."))
    return objects, counts


def warm_s3(server, objects: int = 100, size: int = 64 * 1024) -> float:
    """PUT, list, GET and delete ``objects`` objects of ``size`` bytes in a throwaway bucket,
    so that the first timed consumer does not pay the new server's JVM warm-up (class
    loading, JIT), which a store in service never charges; returns seconds."""
    from pyarrow import fs as pafs

    started = time.perf_counter()
    fs = server.filesystem()
    bucket = server.bucket(f"bench-warmup-{uuid.uuid4().hex[:8]}")
    body = os.urandom(size)
    for i in range(objects):
        with fs.open_output_stream(f"{bucket}/warm/{i:05d}.bin") as out:
            out.write(body)
    infos = fs.get_file_info(pafs.FileSelector(f"{bucket}/warm", recursive=True))
    for info in infos:
        with fs.open_input_file(info.path) as f:
            f.read()
    for info in infos:  # one by one: S3Proxy answered DeleteObjects with INTERNAL_FAILURE
        fs.delete_file(info.path)
    return time.perf_counter() - started


def _cpu_seconds(pid: int | None) -> float:
    import psutil

    if pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system + t.children_user + t.children_system


def run_lake_s3(settings, workdir: Path, events: int, rounds: int = 2) -> dict:
    """The ``lake_s3`` figure (see the module docstring); ``settings``: a topic of its own
    on the private broker."""
    from tests.fixtures.s3_server import CHECKSUM_ENV, LocalS3

    load_start = [round(x, 2) for x in os.getloadavg()]
    # pyarrow's AWS SDK (here, for the checks) reads these from the process environment only
    os.environ.update(CHECKSUM_ENV)
    server = LocalS3(data_dir=workdir / "s3proxy")
    log(f"lake_s3: starting S3Proxy with ops/s3/s3proxy.sh on {server.endpoint}")
    started = time.perf_counter()
    try:
        server.start()
        s3_start_seconds = time.perf_counter() - started
        pid_file = server.data_dir / "s3proxy.pid"
        s3_pid = int(pid_file.read_text()) if pid_file.exists() else None
        log(f"lake_s3: S3Proxy up in {s3_start_seconds:.1f} s (pid {s3_pid})")
        warm_seconds = warm_s3(server)
        log(f"lake_s3: S3Proxy warmed up ({warm_seconds:.1f} s)")
        fs = server.filesystem()
        env = {**os.environ, **server.env()}
        up = (
            f'eval "$(S3PROXY_PORT={server.port} S3PROXY_DATA_DIR={rel(server.data_dir)} '
            'ops/s3/s3proxy.sh up)" && '
        )

        topic = fill_topic(settings, events)
        flush = flush_settings()

        def argv_for(lake: str | Path, side: str) -> list[str]:
            argv = consume_argv(
                settings,
                group=f"bench-lake-s3-{side}-{uuid.uuid4().hex[:6]}",
                lake=lake,  # type: ignore[arg-type]  # a URL goes through str() as is
                until_idle=UNTIL_IDLE,
                flush_seconds=flush["flush_seconds"],
            )
            return argv + ["--flush-events", str(flush["flush_events"])]

        runs: dict[str, list[dict]] = {"local": [], "bucket": []}
        for i in range(rounds):
            order = ("local", "bucket") if i % 2 == 0 else ("bucket", "local")
            for side in order:
                tag = f"r{i + 1}-{uuid.uuid4().hex[:6]}"
                if side == "local":
                    lake: str | Path = workdir / f"lake-s3bench-local-{tag}"
                else:
                    bucket = server.bucket(f"bench-lake-{tag}")
                    lake = f"s3://{bucket}/lake"
                argv = argv_for(lake, side)
                log(f"lake_s3 round {i + 1} ({side}): {command_text(argv)}")
                cpu0 = _cpu_seconds(s3_pid)
                timed = run_timed(argv, env=env).check()
                s3_cpu = _cpu_seconds(s3_pid) - cpu0
                if side == "local":
                    counts = _check_lake(Path(lake), events)
                    objects = _local_objects(Path(lake))
                else:
                    objects, counts = _s3_lake(fs, f"{bucket}/lake")
                    rows = sum(counts[t] for t in TABLES)
                    if rows != events or counts["distinct_offsets"] != events:
                        raise RuntimeError(
                            f"{lake} holds {rows} rows / {counts['distinct_offsets']} distinct "
                            f"offsets, expected {events}: {counts}"
                        )
                log(
                    f"lake_s3 round {i + 1} ({side}): {events / timed.seconds:,.0f} events/s "
                    f"({timed.seconds:.2f} s), {objects['objects']} objects"
                )
                runs[side].append(
                    {
                        "lake": lake,
                        "seconds": timed.seconds,
                        "cpu_seconds": timed.cpu_seconds,
                        "s3proxy_cpu_seconds": s3_cpu,
                        "peak_pss_mb": round(timed.peak_pss_bytes / 2**20, 1),
                        "objects": objects,
                        "rows": {k: counts[k] for k in (*TABLES, "distinct_offsets")},
                        "command": (up if side == "bucket" else "") + timed.command,
                    }
                )

        best = {side: min(rs, key=lambda r: r["seconds"]) for side, rs in runs.items()}
        rate = {side: events / best[side]["seconds"] for side in runs}
        ratio = rate["bucket"] / rate["local"]
        same_rows = best["local"]["rows"] == best["bucket"]["rows"]
        if not same_rows:
            raise RuntimeError(
                f"the lakes differ: local {best['local']['rows']}, bucket {best['bucket']['rows']}"
            )

        def side_figure(side: str) -> dict:
            b = best[side]
            out = {
                "landed_events_per_s": round(rate[side]),
                "consume_seconds": round(b["seconds"], 2),
                "runs_events_per_s": [round(events / r["seconds"]) for r in runs[side]],
                "consume_cpu_seconds": round(b["cpu_seconds"], 2),
                "peak_pss_mb": b["peak_pss_mb"],
                "lake": str(b["lake"]) if side == "bucket" else rel(b["lake"]),
                **b["objects"],
                "rows": b["rows"],
                "command": b["command"],
            }
            if side == "bucket":
                out["s3proxy_cpu_seconds"] = round(b["s3proxy_cpu_seconds"], 2)
                out["puts"] = (
                    "one PUT per object; the _index/partitions objects are rewritten "
                    "ahead of some flushes (about once in 64), so PUTs >= objects"
                )
            return out

        # -- build --full from each lake (informational) --------------------------------------
        builds: dict[str, list[dict]] = {"local": [], "bucket": []}
        for i in range(rounds):
            order = ("local", "bucket") if i % 2 == 0 else ("bucket", "local")
            for side in order:
                warehouse = workdir / f"warehouse-s3bench-{side}-{i + 1}.duckdb"
                argv = [*_build_argv(best[side]["lake"], warehouse), "--full"]  # type: ignore[arg-type]
                log(f"lake_s3 build round {i + 1} ({side}): {command_text(argv)}")
                timed = run_timed(argv, env=env).check()
                log(f"lake_s3 build round {i + 1} ({side}): {timed.seconds:.2f} s")
                builds[side].append(
                    {
                        "seconds": timed.seconds,
                        "warehouse": warehouse,
                        "command": (up if side == "bucket" else "") + timed.command,
                    }
                )
        best_build = {side: min(bs, key=lambda b: b["seconds"]) for side, bs in builds.items()}
        identical = _same_daily_cost(
            best_build["local"]["warehouse"], best_build["bucket"]["warehouse"]
        )
        build_ratio = best_build["bucket"]["seconds"] / best_build["local"]["seconds"]

        log(
            f"lake_s3: local {rate['local']:,.0f}/s, bucket {rate['bucket']:,.0f}/s "
            f"(ratio {ratio:.3f}, goal >= {GOAL}); build --full local "
            f"{best_build['local']['seconds']:.2f} s, bucket {best_build['bucket']['seconds']:.2f} s"
        )
        return {
            "events": events,
            "topic": topic,
            "goal": f"bucket >= {GOAL} x local (landed events/s)",
            "ratio_bucket_to_local": round(ratio, 3),
            "met": ratio >= GOAL,
            "local": side_figure("local"),
            "bucket": side_figure("bucket"),
            "same_rows": same_rows,
            "flush_settings": {
                **flush,
                "passed": "--flush-events / --flush-seconds set to the consumer's defaults; "
                "max_buffer_bytes and write_threads are the lake writer's defaults",
            },
            "until_idle_seconds": UNTIL_IDLE,
            "build_full": {
                "informational": True,
                "local_seconds": round(best_build["local"]["seconds"], 2),
                "bucket_seconds": round(best_build["bucket"]["seconds"], 2),
                "ratio_bucket_to_local_seconds": round(build_ratio, 3),
                "runs_local_seconds": [round(b["seconds"], 2) for b in builds["local"]],
                "runs_bucket_seconds": [round(b["seconds"], 2) for b in builds["bucket"]],
                "daily_cost_by_role_identical": identical,
                "local_command": best_build["local"]["command"],
                "bucket_command": best_build["bucket"]["command"],
            },
            "s3_server": {
                "what": "S3Proxy (ops/s3/s3proxy.sh, filesystem-nio2 backend, default JVM "
                "settings) on 127.0.0.1, its buckets on the same disk as the local lake",
                "start_seconds": round(s3_start_seconds, 1),
                "warmup": "100 PUTs, a listing, 100 GETs and DELETEs of 64 KB objects in a throwaway "
                "bucket before the first timed run (JVM class loading and JIT; a store in "
                "service never charges them)",
                "warmup_seconds": round(warm_seconds, 1),
            },
            "machine_load": {
                "load_average_at_start": load_start,
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
            },
            "method": "one topic pre-produced once; per round a fresh local lake and a fresh "
            "bucket, each drained by `modelmeter consume --until-idle` in a fresh group, "
            "the order alternated; wall seconds from process start to exit (start-up, "
            "group join, recovery, the idle tail and the final flush and commit included); "
            "best run of each side; both lakes read back (every offset exactly once, same "
            "rows per table)",
            "command": f".venv/bin/python bench/run.py --only lake_s3 --s3-events {events} "
            f"--rounds {rounds}",
        }
    finally:
        log("lake_s3: stopping S3Proxy")
        try:
            server.stop()
        except Exception as exc:  # keep the figure's own error, if any
            log(f"lake_s3: stopping S3Proxy failed: {exc}")


def _same_daily_cost(a: Path, b: Path) -> bool:
    import duckdb

    rows = []
    for warehouse in (a, b):
        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            rows.append(con.execute("select * from daily_cost_by_role order by all").fetchall())
        finally:
            con.close()
    return rows[0] == rows[1] and bool(rows[0])
