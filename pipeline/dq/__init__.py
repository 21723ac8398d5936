"""``modelmeter dq``: nightly data-quality checks of one day, with great-expectations.

::

    report = run_dq(settings, dt.date(2025, 6, 1))
    print(render_summary(report))      # PASS/FAIL/SKIP per check, the failing values
    report.exit_code                   # 0 all pass (or skipped), 1 any check failed

The checks (:data:`CHECKS`) are expectation suites kept as JSON files in
``schemas/expectations/`` with thresholds in ``schemas/dq.yaml``; they run over the day's
lake partitions (:mod:`pipeline.dq.lakeday`; a local lake or one in an S3 bucket) and,
read-only, the warehouse. Besides the summary, a run writes a JSON result for schedulers
(``<dq dir>/dq-<date>.json``) and great-expectations' HTML data docs
(``<dq dir>/data_docs/index.html``), where the dq dir is ``<lake parent>/dq/`` for a local
lake and ``<warehouse parent>/dq/`` for a lake in a bucket (:func:`default_outputs`).
It cannot run (ConfigError, exit 2) without a lake (or its bucket), without any file for the
day, with a bad date or a bad policy / price book / dq config.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from pipeline._exceptions import ConfigError, NoDataError
from pipeline.dq.checks import CHECKS
from pipeline.object_lake import ObjectLake
from pipeline.settings import Settings

__all__ = ["CHECKS", "run_dq", "run_cli", "default_outputs"]


def default_outputs(settings: Settings, day: dt.date) -> tuple[Path, Path]:
    """(JSON result file, data-docs directory) in ``<lake parent>/dq/`` for a local lake.

    A lake in a bucket has no local parent: the outputs go next to the warehouse instead,
    ``<warehouse parent>/dq/`` (``data/dq/`` with the default warehouse
    ``data/warehouse.duckdb``, where the default local lake ``data/lake`` puts them too).
    """
    if isinstance(settings.lake, ObjectLake):
        base = Path(settings.warehouse).parent / "dq"
    else:
        base = Path(settings.lake).parent / "dq"
    return base / f"dq-{day.isoformat()}.json", base / "data_docs"


def run_dq(
    settings: Settings,
    day: dt.date,
    *,
    config_path: Path | None = None,
    output: Path | None = None,
    docs_dir: Path | None = None,
    data_docs: bool = True,
    now: dt.datetime | None = None,
):
    """Run every check of ``day``; writes the JSON result and the data docs, returns the report."""
    from pipeline.dq.checks import DayInputs, run_checks
    from pipeline.dq.config import default_config_path, load_dq_config
    from pipeline.dq.gx import GxRunner
    from pipeline.dq.lakeday import load_lake_day
    from pipeline.dq.output import DqReport, write_json
    from pipeline.policy import load_policy
    from pipeline.prices import load_price_book

    now = now or dt.datetime.now(dt.UTC)
    lake = settings.lake
    if isinstance(lake, ObjectLake):
        lake.check()  # the bucket exists and answers (exit 2 otherwise)
    elif not Path(lake).is_dir():
        raise ConfigError(f"no lake at {lake} (set MODELMETER_LAKE or --lake)")
    config = load_dq_config(config_path or default_config_path())
    policy = load_policy(settings.policy)
    prices = load_price_book(settings.prices)
    lake_day = load_lake_day(lake, day)
    if lake_day.files.empty:
        raise NoDataError(
            f"no lake partition for {day.isoformat()} in {lake} "
            "(llm_call, task_feedback and _rejected have no file that day)"
        )
    default_json, default_docs = default_outputs(settings, day)
    docs = (docs_dir or default_docs) if data_docs else None
    runner = GxRunner(
        docs_dir=docs, run_name=f"dq-{day.isoformat()}", max_listed_values=config.max_listed_values
    )
    results = run_checks(
        DayInputs(
            day=day,
            now=now,
            lake_day=lake_day,
            policy=policy,
            prices=prices,
            warehouse=Path(settings.warehouse),
            config=config,
        ),
        runner,
    )
    json_path = output or default_json
    report = DqReport(
        day=day,
        generated_at=now,
        lake=lake,
        warehouse=Path(settings.warehouse),
        results=results,
        json_path=json_path,
        data_docs=runner.build_docs(),
    )
    write_json(report, json_path)
    return report


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    """``modelmeter dq [--date D] [--output PATH] [--data-docs DIR | --no-data-docs] [--dq-config PATH]``."""
    from pipeline.dq.output import render_summary
    from pipeline.report import parse_report_date

    day = parse_report_date(getattr(args, "date", None))
    report = run_dq(
        settings,
        day,
        config_path=_path(getattr(args, "dq_config", None)),
        output=_path(getattr(args, "output", None)),
        docs_dir=_path(getattr(args, "data_docs", None)),
        data_docs=not getattr(args, "no_data_docs", False),
    )
    print(render_summary(report))
    return report.exit_code


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
