"""The HTML report rendered by a real headless Chromium: the four charts are drawn.

The report has no JavaScript of its own. The test renders it twice: as is, to a screenshot,
and as a copy with a small measuring script appended, whose findings Chromium writes into the
DOM that ``--dump-dom`` prints: each chart's on-screen size, how many of its marks have a
non-empty layout box, whether the browser's hit-testing finds each bar where it is drawn,
and how many resources the page fetched (none: the file is self-contained).

Skips when Chromium is not installed, unless ``MODELMETER_REQUIRE_BROWSER=1`` (CI), where a
missing browser fails the test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.report.charts import CHART_IDS
from pipeline.settings import Settings
from tests.fixtures.kafka_broker import REPO_ROOT

# one worker runs the module: its module-scoped fixture is made once, not once per worker
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1200, 5000)  # tall enough that the whole report is inside the viewport

MEASURE = """
<pre id="measure"></pre>
<script>
const out = {charts: {}, resources: performance.getEntriesByType("resource").length};
for (const svg of document.querySelectorAll("svg.chart")) {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll("rect.bar, rect.target-band, path.trend-line, circle.point, line.target-line")];
  const drawn = marks.filter(m => {
    const b = m.getBBox();  // a straight line has one empty side
    return m.tagName === "line" ? b.width + b.height > 0 : b.width > 0 && b.height > 0;
  });
  const all = [...svg.querySelectorAll("rect.bar")];
  const bars = all.filter(m => m.getBBox().width >= 2);  // wide enough to hit-test
  const hit = bars.filter(m => {
    const r = m.getBoundingClientRect();
    return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2) === m;
  });
  const fills = [...new Set(all.map(m => getComputedStyle(m).fill))];
  out.charts[svg.id] = {width: box.width, height: box.height, marks: marks.length,
                        drawn: drawn.length, all_bars: all.length, bars: bars.length,
                        hit: hit.length, fills: fills,
                        title: svg.querySelector("title").textContent,
                        labelledby: svg.getAttribute("aria-labelledby")};
}
document.getElementById("measure").textContent = JSON.stringify(out);
</script>
"""


@pytest.fixture(scope="module")
def browser() -> str:
    """Path of the headless Chromium; skip (or fail under MODELMETER_REQUIRE_BROWSER=1)."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = f"no headless Chromium found (looked for {', '.join(BROWSERS)})"
    if os.environ.get("MODELMETER_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " and MODELMETER_REQUIRE_BROWSER=1")
    pytest.skip(message)


def _run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    """The golden warehouse's 2025-06-01 report as an HTML file written by the CLI."""
    from pipeline.warehouse import build_warehouse
    from tests.fixtures.golden import write_golden_lake

    root = tmp_path_factory.mktemp("browser")
    write_golden_lake(root / "lake")
    settings = Settings(
        lake=root / "lake",
        warehouse=root / "warehouse.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv",
    )
    build_warehouse(settings)
    page = root / "report.html"
    assert (
        main(
            [
                "report",
                "--date",
                str(dt.date(2025, 6, 1)),
                "--format",
                "html",
                "--output",
                str(page),
                "--warehouse",
                str(settings.warehouse),
            ]
        )
        == 0
    )
    return page


def test_chromium_draws_every_chart_of_the_report(browser: str, report_html: Path, tmp_path: Path):
    harness = tmp_path / "measured.html"
    harness.write_text(report_html.read_text().replace("</body>", MEASURE + "</body>"))
    dom = _run_browser(browser, tmp_path / "profile", "--dump-dom", harness.as_uri()).stdout
    found = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the measuring script did not run"
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))

    assert measured["resources"] == 0  # nothing fetched: the file is self-contained
    assert sorted(measured["charts"]) == sorted(CHART_IDS)
    for chart_id, chart in measured["charts"].items():
        assert chart["width"] > 300 and chart["height"] > 40, chart_id
        assert chart["marks"] > 0 and chart["drawn"] == chart["marks"], chart_id
        assert chart["hit"] == chart["bars"], chart_id  # every bar is visible where drawn
        assert chart["title"] and chart["labelledby"] == f"{chart_id}-title {chart_id}-desc"
    # 2025-06-01: five roles, each on one priced model (glm-4.5, glm-4.5-air or opus); the
    # unpriced glm-5-preview call is not drawn
    roles = measured["charts"]["chart-cost-by-role"]
    assert roles["all_bars"] == 5 and len(roles["fills"]) == 3
    assert measured["charts"]["chart-escalations"]["all_bars"] == 2
    share = measured["charts"]["chart-model-share"]  # 4 models share the calls
    assert share["all_bars"] == share["bars"] == 4 and len(share["fills"]) == 4
    assert measured["charts"]["chart-savings-trend"]["drawn"] >= 2  # target band + the day


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chromium_screenshots_the_report(browser: str, report_html: Path, tmp_path: Path):
    shot = tmp_path / "report.png"
    _run_browser(browser, tmp_path / "profile", f"--screenshot={shot}", report_html.as_uri())
    data = shot.read_bytes()
    assert _png_size(data) == WINDOW
    assert len(data) > 50_000  # a drawn page, not a blank one (blank: a few kB)
    keep = os.environ.get("MODELMETER_KEEP_SCREENSHOT")
    if keep:  # to look at it: MODELMETER_KEEP_SCREENSHOT=/tmp/report.png pytest -m browser
        shutil.copyfile(shot, keep)


# --- untrusted strings: a value of the data never runs as a script ---------------------------
# The value's onerror handler would set document.title; Chromium's --dump-dom shows the DOM
# after the page ran. Each test also loads a copy with the value written unescaped (what the
# code did before) and checks that there the handler does run: the check can fail.

XSS = "<img src=x onerror=document.title='XSS'>"
XSS_SHOWN = "&lt;img src=x onerror=document.title=&#x27;XSS&#x27;&gt;"


def _title_and_dom(browser: str, profile: Path, page: Path) -> tuple[str, str]:
    dom = _run_browser(browser, profile, "--dump-dom", page.as_uri()).stdout
    found = re.search(r"<title>(.*?)</title>", dom, re.S)
    return (found.group(1) if found else ""), dom


def _assert_inert_and_control_runs(browser: str, page: Path, tmp_path: Path) -> str:
    html_text = page.read_text(encoding="utf-8")
    assert XSS_SHOWN in html_text and XSS not in html_text
    title, dom = _title_and_dom(browser, tmp_path / "profile", page)
    assert title != "XSS" and '<img src="x"' not in dom
    # the DOM serializes text with & < > escaped (quotes as typed): the value is a text node
    assert "&lt;img src=x onerror=document.title='XSS'&gt;" in dom
    control = tmp_path / "unescaped.html"
    control.write_text(html_text.replace(XSS_SHOWN, XSS), encoding="utf-8")
    assert _title_and_dom(browser, tmp_path / "profile", control)[0] == "XSS"
    return title


def test_chromium_shows_a_hostile_role_and_model_of_the_report_as_text(
    browser: str, tmp_path: Path
):
    from pipeline.report import render
    from pipeline.report.figures import RoleModelCost, RoleRow
    from tests.fixtures.reports import hostile_report, sample_report

    base = hostile_report()  # every other hostile value, and the XSS as role and model
    money = base.roles[-1]
    report = sample_report(
        roles=(
            RoleRow(
                XSS,
                False,
                3,
                0,
                10,
                1,
                money.cost_usd,
                money.baseline_cost_usd,
                money.savings_usd,
                money.savings_pct,
            ),
            *base.roles,
        ),
        models=base.models,
        cost_by_role_model=(
            RoleModelCost(XSS, "zai", XSS, 3, money.cost_usd),
            *base.cost_by_role_model,
        ),
        escalations=base.escalations,
        warnings=base.warnings,
    )
    page = tmp_path / "report.html"
    page.write_text(render(report, "html"), encoding="utf-8")
    title = _assert_inert_and_control_runs(browser, page, tmp_path)
    assert title == "modelmeter daily report - 2026-10-06"


def test_chromium_shows_a_hostile_role_in_the_data_docs_as_text(browser: str, tmp_path: Path):
    from pipeline.dq import run_dq
    from pipeline.warehouse import build_warehouse
    from tests.fixtures.dq_lake import DAY, NOW, Lake, call

    settings = Settings(
        lake=tmp_path / "lake",
        warehouse=tmp_path / "w.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv",
    )
    lake = Lake(settings.lake)
    lake.day(DAY)
    lake.flush(2, [("llm_call", call(role=XSS))])
    build_warehouse(settings)
    report = run_dq(settings, DAY, now=NOW, docs_dir=tmp_path / "docs")
    assert any(r.name == "known_roles_triggers" and r.status == "fail" for r in report.results)
    (page,) = (tmp_path / "docs" / "validations" / "llm_call").rglob("*.html")
    _assert_inert_and_control_runs(browser, page, tmp_path)
