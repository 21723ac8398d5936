"""The outputs of ``modelmeter dq``: a one-screen summary and a JSON file for schedulers.

Both may name values of the data (a role, a model, a file name): every summary line goes
through :func:`~pipeline.safe_text.visible` (a cron job writes standard output to a file;
no control, bidi or zero-width character reaches it) and the JSON file is ASCII
(``ensure_ascii``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.dq.checks import CheckResult
from pipeline.lake_files import Lake
from pipeline.report import write_atomic
from pipeline.safe_text import visible

__all__ = ["DqReport", "render_summary", "write_json"]

#: Failing values shown per check on screen (the JSON file has them all).
SCREEN_FAILURES = 3


@dataclass
class DqReport:
    """The verdicts of one run and where its outputs went."""

    day: dt.date
    generated_at: dt.datetime
    lake: Lake  # a local directory or an S3 bucket (shown as s3://bucket/prefix)
    warehouse: Path
    results: list[CheckResult]
    json_path: Path | None = None
    data_docs: Path | None = None

    @property
    def status(self) -> str:
        return "fail" if any(r.status == "fail" for r in self.results) else "pass"

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "fail" else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip")}

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "status": self.status,
            "exit_code": self.exit_code,
            "generated_at": self.generated_at.isoformat(),
            "lake": str(self.lake),
            "warehouse": str(self.warehouse),
            "counts": self.counts(),
            "checks": [r.to_json() for r in self.results],
            "failed": [r.name for r in self.results if r.status == "fail"],
            "data_docs": str(self.data_docs) if self.data_docs else None,
        }


def render_summary(report: DqReport) -> str:
    """Each check on one line (PASS/FAIL/SKIP and the failing values), then the totals."""
    width = max(len(r.name) for r in report.results)
    lines = [
        f"modelmeter dq {report.day.isoformat()}  lake {report.lake}  warehouse {report.warehouse}"
    ]
    for r in report.results:
        if r.status == "pass":
            detail = r.description
        elif r.status == "skip":
            detail = f"skipped: {r.reason}"
        else:
            detail = r.failures[0] if r.failures else r.description
        lines.append(f"{r.status.upper():4}  {r.name:<{width}}  {detail}")
        if r.status == "fail":
            for extra in r.failures[1:SCREEN_FAILURES]:
                lines.append(f"{'':4}  {'':<{width}}  {extra}")
            if len(r.failures) > SCREEN_FAILURES:
                lines.append(
                    f"{'':4}  {'':<{width}}  ... {len(r.failures) - SCREEN_FAILURES} more "
                    "in the JSON result"
                )
    counts = report.counts()
    lines.append(
        f"{len(report.results)} checks: {counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['skip']} skipped -> {report.status.upper()}"
    )
    if report.json_path:
        lines.append(f"result: {report.json_path}")
    if report.data_docs:
        lines.append(f"data docs: {report.data_docs}")
    return "\n".join(visible(line) for line in lines)


def write_json(report: DqReport, path: Path) -> None:
    """Write the result file atomically (a scheduler polling it never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(report.to_json(), indent=2, ensure_ascii=True) + "\n")
