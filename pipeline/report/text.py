"""The report as aligned terminal tables (rich).

Colour only when asked for (the CLI asks when standard output is a TTY, never for an
``--output`` file); every status is also a word, so nothing depends on colour.

Everything is handed to rich as :class:`rich.text.Text`, never as a markup string: a role
``[/bold]`` or ``[bold red]x[/]`` is printed as those characters, and the data in it has been
through :func:`~pipeline.safe_text.visible` (pipeline/report/formatting.py), so no control,
bidi or zero-width character reaches the terminal or the file.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.report import formatting as f
from pipeline.report.figures import DailyReport

__all__ = ["render_text"]

_STATUS_STYLE = {
    "met": "bold green",
    "missed": "bold red",
    "below_range": "bold red",
    "above_range": "bold magenta",  # beyond the range: not a failure to reach it
    "no_data": "yellow",
    "ok": "green",
    "projected_over": "bold yellow",
    "over": "bold red",
}


def _status(status: str) -> Text:
    return Text(f.status_word(status), style=_STATUS_STYLE.get(status, ""))


def _cell(grid: f.Grid, i: int, value: str) -> Text:
    return _status(value) if i in grid.status_columns else Text(value)


def _print_grid(console: Console, grid: f.Grid) -> None:
    if not grid.rows:
        console.print(Text(grid.title, style="bold"))
        console.print(Text(f"  {grid.empty_text}"))
        console.print()
        return
    table = Table(
        title=Text(grid.title, style="bold"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        header_style="bold",
        pad_edge=False,
        show_edge=False,
    )
    rows = [[_cell(grid, i, c) for i, c in enumerate(row)] for row in grid.rows]
    for i, name in enumerate(grid.header):
        # A narrow terminal may wrap a header between words ("input tokens") but never cuts
        # a figure: each column is at least as wide as its widest value and header word.
        widest = max(
            [row[i].cell_len for row in rows] + [Text(word).cell_len for word in name.split()]
        )
        table.add_column(
            Text(name),
            justify="right" if i in grid.numeric_columns else "left",
            min_width=widest,
            overflow="fold",
        )
    for cells in rows:
        table.add_row(*cells)
    console.print(table)
    console.print()


def render_text(report: DailyReport, *, color: bool = False, width: int = 120) -> str:
    """The whole report as text; ANSI colour codes only when ``color`` is true."""
    out = io.StringIO()
    # no_color=None lets rich honour the NO_COLOR convention on a TTY
    console = Console(
        file=out,
        width=width,
        force_terminal=color,
        no_color=None if color else True,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
        legacy_windows=False,
        soft_wrap=True,
    )
    h = report.headline
    console.print(Text(f.title(report), style="bold"))
    console.print(Text(f.subtitle(report)))
    console.print()
    _print_grid(console, f.headline_grid(report))
    line = Text(
        f"Month-to-date cost reduction {f.pct(h.mtd_cost_reduction_pct)} against the "
        f"{f.cost_reduction_target(report)} target: "
    )
    line.append_text(_status(h.mtd_status))
    console.print(line)
    console.print()
    for grid in (
        f.role_grid(report),
        f.model_grid(report),
        f.kpi_grid(report),
        f.budget_grid(report),
        f.escalation_grid(report),
    ):
        _print_grid(console, grid)

    if report.policy_versions is not None:
        from pipeline.report import policy_versions as pv

        _print_grid(console, pv.version_grid(report.policy_versions))
        _print_grid(console, pv.comparison_grid(report.policy_versions))
        for line_text in pv.section_lines(report.policy_versions):
            console.print(Text(f"  {line_text}"))
        console.print()

    console.print(Text("ROI projection", style="bold"))
    for line_text in f.roi_lines(report):
        console.print(Text(f"  {line_text}"))
    console.print()

    console.print(Text("Data warnings", style="bold"))
    lines = f.warning_lines(report)
    for line_text in lines:
        console.print(Text("  warning: ", style="bold yellow") + Text(line_text))
    if not lines:
        console.print(Text(f"  {f.NO_WARNINGS}"))
    for line_text in f.info_lines(report):
        console.print(Text(f"  note: {line_text}"))
    console.print(Text(f"  freshness: {f.freshness_text(report)}"))
    text = out.getvalue()
    if not color:  # rich pads every line to the width; files and pipes need no trailing blanks
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text
