"""The report as GitHub-flavoured markdown, for chat and issues."""

from __future__ import annotations

from pipeline.report import formatting as f
from pipeline.report.data import DailyReport

__all__ = ["render_markdown"]


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _status(status: str) -> str:
    word = f.status_word(status)
    return f"**{word}**" if status == "missed" else word


def _table(grid: f.Grid) -> list[str]:
    out = [f"## {grid.title}", ""]
    if not grid.rows:
        return out + [grid.empty_text[0].upper() + grid.empty_text[1:] + ".", ""]
    out.append("| " + " | ".join(_cell(h) for h in grid.header) + " |")
    out.append("|" + "|".join("---:" if i in grid.numeric_columns else "---"
                              for i in range(len(grid.header))) + "|")
    for row in grid.rows:
        out.append("| " + " | ".join(_status(c) if i in grid.status_columns else _cell(c)
                                     for i, c in enumerate(row)) + " |")
    return out + [""]


def render_markdown(report: DailyReport) -> str:
    out = [f"# {f.title(report)}", "", f.subtitle(report), "",
           f"**{f.headline_sentence(report)}**", ""]
    out += _table(f.headline_grid(report))
    for grid in (f.role_grid(report), f.model_grid(report), f.kpi_grid(report),
                 f.escalation_grid(report)):
        out += _table(grid)
    out += ["## ROI projection", ""] + [f"- {line}" for line in f.roi_lines(report)] + [""]
    out += ["## Data warnings", ""]
    out += [f"- warning: {line}" for line in f.warning_lines(report)] or [f"- {f.NO_WARNINGS}"]
    out += [f"- note: {line}" for line in f.info_lines(report)]
    out.append(f"- freshness: {f.freshness_text(report)}")
    return "\n".join(out) + "\n"
