"""Warehouse benchmarks on a large generated lake: the ``build`` figure.

1. bench/gen_lake.py writes a lake of N events over 30 days (default 10M), ending the day
   before yesterday;
2. ``modelmeter build`` (full build; the warehouse does not exist yet);
3. one more day lands (yesterday, N/30 events, gen_lake ``--append``) and
   ``modelmeter build`` runs again: goal <= 20% of the full build;
4. ``modelmeter report --date <yesterday>`` (text, to a file): goal <= 2 s;
5. DuckDB vs pandas computing daily_cost_by_role from the same Parquet
   (bench/pandas_vs_duckdb.py): goal DuckDB >= 5x faster.

Every step is a subprocess timed from start to exit (start-up included).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen_lake  # noqa: E402
from bench.common import MODELMETER, REPO_ROOT, log, run_timed  # noqa: E402

__all__ = ["run_build"]

HERE = Path(__file__).resolve().parent


def _build_argv(lake: Path, warehouse: Path) -> list[str]:
    return [
        MODELMETER,
        "build",
        "--lake",
        str(lake),
        "--warehouse",
        str(warehouse),
        "--prices",
        str(REPO_ROOT / "schemas" / "prices.csv"),
        "--policy",
        str(REPO_ROOT / "schemas" / "routing_policy.yaml"),
    ]


def _same_as_warehouse(lake: Path, warehouse: Path) -> bool:
    """The benchmark's DuckDB query gives exactly the warehouse's daily_cost_by_role."""
    import duckdb

    from bench.pandas_vs_duckdb import duckdb_daily_cost_by_role

    ours = duckdb_daily_cost_by_role(
        lake, REPO_ROOT / "schemas" / "prices.csv", REPO_ROOT / "schemas" / "routing_policy.yaml"
    )
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        theirs = con.execute(
            "select event_date, role, calls, escalated_calls, input_tokens, output_tokens, "
            "cost_usd, baseline_cost_usd, savings_usd from daily_cost_by_role "
            "order by event_date, role"
        ).fetchall()
    finally:
        con.close()
    return [tuple(r) for r in ours] == [tuple(r) for r in theirs]


def run_build(workdir: Path, events: int, *, days: int = 30, rounds: int = 1) -> dict:
    lake, warehouse = workdir / "lake-build", workdir / "warehouse-build.duckdb"
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    gen = gen_lake.command(lake, events, days, yesterday - dt.timedelta(days=1))
    log(f"build: generating a {events:,}-event, {days}-day lake")
    timed_gen = run_timed(gen).check()
    generated = json.loads(timed_gen.stdout)
    log(f"build: lake generated in {timed_gen.seconds:.1f} s ({generated['files']} files)")

    argv = _build_argv(lake, warehouse)
    log("build: full build")
    full = run_timed(argv).check()
    log(f"build: full build {full.seconds:.1f} s")

    day_events = events // days
    append = gen_lake.command(lake, day_events, 1, yesterday, append=True)
    appended = run_timed(append).check()
    log(f"build: one more day landed ({day_events:,} events); incremental build")
    incremental = run_timed(argv).check()
    share = incremental.seconds / full.seconds
    log(f"build: incremental build {incremental.seconds:.1f} s ({share:.0%} of full)")

    report_argv = [
        MODELMETER,
        "report",
        "--warehouse",
        str(warehouse),
        "--date",
        str(yesterday),
        "--format",
        "text",
        "--output",
        str(workdir / "report.txt"),
    ]
    report = run_timed(report_argv).check()
    log(f"build: report for one day {report.seconds:.2f} s")

    from bench.pandas_vs_duckdb import compare

    log("build: DuckDB vs pandas daily_cost_by_role (alternating)")
    versus = compare(lake, rounds=rounds)
    versus["command"] = (
        f".venv/bin/python bench/pandas_vs_duckdb.py --lake {lake} --rounds {rounds}"
    )
    versus["identical_to_warehouse_daily_cost_by_role"] = _same_as_warehouse(lake, warehouse)
    log(
        f"build: duckdb {versus['duckdb_s']} s vs pandas {versus['pandas_s']} s "
        f"({versus['speedup']}x, identical={versus['results_identical']})"
    )
    return {
        "lake": {
            "events": generated["events"] + day_events,
            "days": days + 1,
            "files_per_table_day": "one per (partition, flush of <= 50k messages)",
            "generate_seconds": round(timed_gen.seconds, 1),
            "command": timed_gen.command,
        },
        "full_build": {
            "seconds": round(full.seconds, 2),
            "events": generated["events"],
            "command": full.command,
        },
        "incremental_build": {
            "seconds": round(incremental.seconds, 2),
            "share_of_full": round(share, 3),
            "new_day_events": day_events,
            "goal": "<= 20% of the full build",
            "met": share <= 0.2,
            "command": incremental.command,
            "append_command": appended.command,
        },
        "report_one_day": {
            "seconds": round(report.seconds, 2),
            "goal": "<= 2 s",
            "met": report.seconds <= 2.0,
            "command": report.command,
        },
        "daily_cost_by_role_duckdb_vs_pandas": versus,
        "met": bool(share <= 0.2 and report.seconds <= 2.0 and versus["met"]),
    }
