"""``modelmeter report``: the daily report, in four formats, from the warehouse.

::

    report = load_daily_report(settings.warehouse, dt.date(2026, 10, 6))
    print(render(report, "markdown"))

:mod:`pipeline.report.data` reads one day into a typed :class:`DailyReport` (exact
decimals); one module per format renders it (``text``, ``markdown``, ``json``, ``html``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
from pathlib import Path

from pipeline._exceptions import ConfigError
from pipeline.files import atomic_write
from pipeline.report.data import load_daily_report
from pipeline.report.figures import SCHEMA_VERSION, DailyReport
from pipeline.report.html import render_html
from pipeline.report.json import render_json
from pipeline.report.markdown import render_markdown
from pipeline.report.text import render_text
from pipeline.settings import Settings

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "DailyReport",
    "load_daily_report",
    "parse_report_date",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
    "render_text",
    "run_cli",
    "write_atomic",
]

FORMATS = ("text", "markdown", "json", "html")


def parse_report_date(value: str | None, *, today: dt.date | None = None) -> dt.date:
    """``--date`` as a date; None -> yesterday (UTC). Bad input -> ConfigError naming it."""
    if value is None:
        return (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=1)
    try:
        if len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--date {value}: not a date (YYYY-MM-DD)") from None


def render(report: DailyReport, fmt: str, *, color: bool = False, width: int = 120) -> str:
    """The report in ``fmt`` (one of FORMATS); ``color``/``width`` apply to text only."""
    if fmt == "text":
        return render_text(report, color=color, width=width)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "html":
        return render_html(report)
    raise ConfigError(f"--format {fmt}: not one of {', '.join(FORMATS)}")


def write_atomic(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` so readers see the old file or the whole new one; the
    new file's mode is ``0o666`` less the process umask (:func:`pipeline.files.atomic_write`)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"--output {path}: directory {parent} does not exist")
    try:
        with atomic_write(path) as fh:
            fh.write(content.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"--output {path}: cannot write there ({exc.strerror})") from None


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    day = parse_report_date(args.date)
    report = load_daily_report(settings.warehouse, day)
    if args.output:
        write_atomic(Path(args.output), render(report, args.format))
        print(f"wrote {args.format} report for {day} to {args.output}", file=sys.stderr)
        return 0
    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size((120, 40)).columns if tty else 120
    try:
        sys.stdout.write(render(report, args.format, color=tty, width=width))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left early (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
