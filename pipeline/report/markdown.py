"""The report as GitHub-flavoured markdown, for chat and issues.

Every string from the data is :func:`~pipeline.safe_text.markdown_text` (visible, then every
ASCII punctuation character backslash-escaped): a role ``![t](https://...)``, ``<img ...>``,
``a|b`` or one holding a carriage return stays one literal table cell, never an image, raw
HTML, an extra cell or an extra row. The sentences and figures around it are the report's
own and stay unescaped.
"""

from __future__ import annotations

from pipeline.policy import MISSED_STATUSES
from pipeline.report import formatting as f
from pipeline.report.figures import DailyReport
from pipeline.safe_text import markdown_text

__all__ = ["render_markdown"]


_OVER_BUDGET = frozenset({"over", "projected_over"})


def _status(status: str) -> str:
    word = f.status_word(status, markdown_text)
    return f"**{word}**" if status in MISSED_STATUSES or status in _OVER_BUDGET else word


def _table(grid: f.Grid) -> list[str]:
    """``grid`` built with ``esc=markdown_text``: its data cells are already escaped."""
    out = [f"## {grid.title}", ""]
    if not grid.rows:
        return out + [grid.empty_text[0].upper() + grid.empty_text[1:] + ".", ""]
    out.append("| " + " | ".join(grid.header) + " |")
    out.append(
        "|"
        + "|".join("---:" if i in grid.numeric_columns else "---" for i in range(len(grid.header)))
        + "|"
    )
    for row in grid.rows:
        out.append(
            "| "
            + " | ".join(_status(c) if i in grid.status_columns else c for i, c in enumerate(row))
            + " |"
        )
    return out + [""]


def render_markdown(report: DailyReport) -> str:
    esc = markdown_text
    out = [
        f"# {f.title(report)}",
        "",
        f.subtitle(report, esc),
        "",
        f"**{f.headline_sentence(report, lambda s: f.status_word(s, esc))}**",
        "",
    ]
    out += _table(f.headline_grid(report))
    for grid in (
        f.role_grid(report, esc),
        f.model_grid(report, esc),
        f.kpi_grid(report, esc),
        f.budget_grid(report, esc),
        f.escalation_grid(report, esc),
    ):
        out += _table(grid)
    if report.policy_versions is not None:
        from pipeline.report import policy_versions as pv

        out += _table(pv.version_grid(report.policy_versions, esc))
        out += _table(pv.comparison_grid(report.policy_versions, esc))
        out += [f"- {line}" for line in pv.section_lines(report.policy_versions, esc)] + [""]
    out += ["## ROI projection", ""] + [f"- {line}" for line in f.roi_lines(report)] + [""]
    out += ["## Data warnings", ""]
    out += [f"- warning: {line}" for line in f.warning_lines(report, esc)] or [f"- {f.NO_WARNINGS}"]
    out += [f"- note: {line}" for line in f.info_lines(report)]
    out.append(f"- freshness: {f.freshness_text(report)}")
    return "\n".join(out) + "\n"
