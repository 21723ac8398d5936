"""``modelmeter simulate``: produce a run's traffic, show progress, print (and save) the counts."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

from pipeline._exceptions import ConfigError
from pipeline.simulate.producers import simulate, worker_count
from pipeline.simulate.traffic import SimRun, load_traffic

__all__ = ["end_date", "run_cli"]


def end_date(text: str | None, today: dt.date) -> dt.date:
    """The last day of traffic: ``--end-date`` (not after today), or yesterday."""
    if not text:
        return today - dt.timedelta(days=1)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--end-date: expected YYYY-MM-DD, got {text!r}") from None
    if day > today:
        raise ConfigError(f"--end-date {day} is in the future (today is {today} UTC)")
    return day


def run_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter simulate``: produce, show progress on stderr, print the counts."""
    now = dt.datetime.now(dt.UTC)
    run = SimRun(
        events=args.events,
        days=args.days,
        end_date=end_date(args.end_date, now.date()),
        seed=args.seed,
        bad_fraction=args.bad_fraction,
        duplicate_fraction=args.duplicate_fraction,
        not_after=now,
    )
    if run.end_date < now.date():
        run = dataclasses.replace(run, not_after=None)
    traffic = load_traffic(settings.policy)
    policy = traffic.policy
    worker_count(run, args.workers)  # bad options fail before the progress bar starts
    expected = (
        run.events
        + math.floor(run.events * run.bad_fraction)
        + math.floor(run.events * run.duplicate_fraction)
    )
    started = time.perf_counter()
    from rich.console import Console

    console = Console(stderr=True)
    if args.no_progress or not console.is_terminal:  # a bar in a log file is noise
        summary = simulate(traffic, run, settings, workers=args.workers)
    else:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("simulate"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("messages", total=expected)
            summary = simulate(
                traffic,
                run,
                settings,
                workers=args.workers,
                progress=lambda n: bar.advance(task, n),
            )
    elapsed = time.perf_counter() - started
    data = summary.as_dict()
    rate = data["messages"] / elapsed if elapsed > 0 else 0.0
    data |= {
        "topic": settings.topic,
        "seed": run.seed,
        "days": run.days,
        "first_date": run.start_date.isoformat(),
        "last_date": run.end_date.isoformat(),
        "policy_version": policy.version,
        "elapsed_seconds": round(elapsed, 3),
        "messages_per_second": round(rate),
    }
    if args.summary_json:
        path = Path(args.summary_json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--summary-json {path}: {exc.strerror or exc}") from None
    print(
        f"simulated {data['valid_events']} valid events ({data['llm_call_events']} llm_call, "
        f"{data['task_feedback_events']} task_feedback, {data['distinct_event_ids']} distinct "
        f"event_ids), {data['bad_messages']} bad, {data['duplicates']} duplicates -> "
        f"{settings.topic} in {elapsed:.1f} s ({rate:,.0f} messages/s)"
    )
    return 0
