"""``make bench``: every performance figure, side by side in one run.

    .venv/bin/python bench/run.py                 # the full sizes (1M events, 10M-event lake)
    .venv/bin/python bench/run.py --quick         # a fast smoke pass with small sizes
    .venv/bin/python bench/run.py --only ingest,producer --events 200000
    .venv/bin/python bench/run.py --only collect --collect-lines 200000
    .venv/bin/python bench/run.py --only lake_s3 --update    # bucket vs directory (S3Proxy)

Prints ONE JSON document on stdout and writes it to bench/results.json (``--output``);
progress goes to stderr. Each figure has its value(s), its goal, ``met`` and the exact command
that measured it. Kafka figures use a private broker (ops/kafka/kafka.sh on free ports, a
temporary data dir), never a developer's broker on 9092. Compared things run in the same
process run, alternated where it helps; goals are ratios because shared machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, log, machine, private_broker, settings_for  # noqa: E402

FIGURES = (
    "producer",
    "ingest",
    "scale_out",
    "build",
    "collect",
    "collect_http",
    "lake_growth",
    "lake_s3",
)
QUICK = {
    "events": 50_000,
    "producer_events": 20_000,
    "lake_events": 300_000,
    "collect_lines": 20_000,
    "collect_http_records": 20_000,
    "growth_events": 50_000,
    "growth_files_per_day": 500,
    "growth_year_day_events": 3_000,
    "s3_events": 50_000,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events",
        type=int,
        default=1_000_000,
        help="events pre-produced for ingest/memory/scale_out (default 1M)",
    )
    parser.add_argument(
        "--producer-events",
        type=int,
        default=200_000,
        help="events sent per producer run (default 200k)",
    )
    parser.add_argument(
        "--lake-events",
        type=int,
        default=10_000_000,
        help="events of the generated 30-day lake for build (default 10M)",
    )
    parser.add_argument(
        "--collect-lines",
        type=int,
        default=200_000,
        help="transcript lines of the generated Claude Code tree for collect (default 200k)",
    )
    parser.add_argument(
        "--collect-http-records",
        type=int,
        default=100_000,
        help="Claude Code OTLP log records posted to collect http (default 100k)",
    )
    parser.add_argument(
        "--growth-events",
        type=int,
        default=200_000,
        help="events of the lake_growth lakes (default 200k over --growth-days)",
    )
    parser.add_argument(
        "--growth-days", type=int, default=30, help="days of the lake_growth lakes (default 30)"
    )
    parser.add_argument(
        "--growth-files-per-day",
        type=int,
        default=2000,
        help="files a day of lake_growth's many-files lake (default 2000)",
    )
    parser.add_argument(
        "--growth-year-day-events",
        type=int,
        default=10_000,
        help="events a day of lake_growth's 365-day lake (default 10k; 0: no year)",
    )
    parser.add_argument(
        "--s3-events",
        type=int,
        default=200_000,
        help="events landed into a bucket and into a directory for lake_s3 (default 200k)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"small sizes for a smoke run ({QUICK})"
    )
    parser.add_argument(
        "--only",
        default=",".join(FIGURES),
        help=f"comma-separated figures among {', '.join(FIGURES)} (ingest includes memory)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternated rounds where compared (default 2)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep data here (default: a temp dir, removed)"
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "results.json")
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only the figures measured now in an existing --output",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.producer_events, args.lake_events, args.collect_lines = (
            QUICK["events"],
            QUICK["producer_events"],
            QUICK["lake_events"],
            QUICK["collect_lines"],
        )
        args.collect_http_records = QUICK["collect_http_records"]
        args.growth_events = QUICK["growth_events"]
        args.growth_files_per_day = QUICK["growth_files_per_day"]
        args.growth_year_day_events = QUICK["growth_year_day_events"]
        args.s3_events = QUICK["s3_events"]
    only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = [f for f in only if f not in FIGURES]
    if unknown:
        parser.error(f"--only: unknown figure {unknown[0]!r} (figures: {', '.join(FIGURES)})")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelmeter-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    shown = (
        ["--quick"]
        if args.quick
        else [
            f"--events {args.events}",
            f"--producer-events {args.producer_events}",
            f"--lake-events {args.lake_events}",
            f"--collect-lines {args.collect_lines}",
            f"--collect-http-records {args.collect_http_records}",
            f"--growth-events {args.growth_events}",
            f"--growth-days {args.growth_days}",
            f"--growth-files-per-day {args.growth_files_per_day}",
            f"--growth-year-day-events {args.growth_year_day_events}",
            f"--s3-events {args.s3_events}",
        ]
    )
    doc: dict = {
        "command": " ".join(
            [
                ".venv/bin/python bench/run.py",
                *shown,
                f"--only {','.join(only)}",
                f"--rounds {args.rounds}",
            ]
        ),
        "machine": machine(),
        "sizes": {
            "events": args.events,
            "producer_events": args.producer_events,
            "lake_events": args.lake_events,
            "collect_lines": args.collect_lines,
            "collect_http_records": args.collect_http_records,
            "growth_events": args.growth_events,
            "growth_days": args.growth_days,
            "growth_files_per_day": args.growth_files_per_day,
            "growth_year_day_events": args.growth_year_day_events,
            "s3_events": args.s3_events,
        },
        "figures": {},
    }
    figures = doc["figures"]
    started = time.perf_counter()
    try:
        kafka_figures = ("producer", "ingest", "scale_out", "collect", "collect_http", "lake_s3")
        if any(f in only for f in kafka_figures):
            with private_broker(workdir) as broker:
                if "producer" in only:
                    from bench.producer import run_producer

                    figures["producer"] = run_producer(
                        settings_for(broker, "bench-producer", workdir),
                        workdir,
                        args.producer_events,
                        rounds=args.rounds,
                    )
                if "ingest" in only or "scale_out" in only:
                    from bench.ingest import (
                        fill_topic,
                        run_ingest,
                        run_scale_out,
                    )

                    settings = settings_for(broker, "bench-ingest", workdir)
                    doc["topic"] = fill_topic(settings, args.events)
                    if "ingest" in only:
                        ingest, memory = run_ingest(
                            settings, workdir, args.events, rounds=args.rounds
                        )
                        figures["ingest"], figures["memory"] = ingest, memory
                    if "scale_out" in only:
                        figures["scale_out"] = run_scale_out(settings, workdir, args.events)
                if "collect" in only:
                    from bench.collect import run_collect

                    figures["collect"] = run_collect(
                        settings_for(broker, "bench-collect", workdir),
                        workdir,
                        args.collect_lines,
                        rounds=args.rounds,
                    )
                if "collect_http" in only:
                    from bench.collect_http import run_collect_http

                    figures["collect_http"] = run_collect_http(
                        settings_for(broker, "bench-collect-http", workdir),
                        workdir,
                        args.collect_http_records,
                        rounds=args.rounds,
                    )
                if "lake_s3" in only:
                    from bench.lake_s3 import run_lake_s3

                    figures["lake_s3"] = run_lake_s3(
                        settings_for(broker, "bench-lake-s3", workdir),
                        workdir,
                        args.s3_events,
                        rounds=args.rounds,
                    )
        if "build" in only:
            from bench.build import run_build

            figures["build"] = run_build(workdir, args.lake_events, rounds=args.rounds)
        if "lake_growth" in only:
            from bench.lake_growth import run_lake_growth

            figures["lake_growth"] = run_lake_growth(
                workdir,
                args.growth_events,
                days=args.growth_days,
                files_per_day=args.growth_files_per_day,
                year_day_events=args.growth_year_day_events,
                rounds=args.rounds,
            )
    finally:
        doc["seconds"] = round(time.perf_counter() - started, 1)
        doc["all_met"] = bool(figures) and all(
            fig.get("met", True) for fig in figures.values() if isinstance(fig, dict)
        )
        if args.update and args.output.exists():
            old = json.loads(args.output.read_text())
            old.setdefault("updates", []).append(
                {k: doc[k] for k in ("command", "machine", "sizes", "seconds")}
            )
            if "ingest" in figures:  # an older layout's separate librdkafka figure
                old["figures"].pop("confluent_raw", None)
            old["figures"].update(figures)
            doc = old
            doc["all_met"] = all(
                fig.get("met", True) for fig in doc["figures"].values() if isinstance(fig, dict)
            )
        text = json.dumps(doc, indent=2)
        print(text)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
        log(f"wrote {args.output}")
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
