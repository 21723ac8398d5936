"""The model catalogue (schemas/models.yaml): lifecycle statuses from dates, `policy check`'s
warnings and errors, and calls to a retired model flagged by the warehouse and the report."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline._exceptions import PolicyError
from pipeline.cli import main
from pipeline.model_catalog import ModelLifecycle, lifecycle_problems, load_model_catalogue
from pipeline.policy import load_policy
from pipeline.prices import load_price_book
from pipeline.report import render
from pipeline.report.data import load_daily_report
from pipeline.warehouse import build_warehouse
from tests.fixtures.dq_lake import DAY, Lake, escalated_call
from tests.fixtures.kafka_broker import REPO_ROOT

SCHEMAS = REPO_ROOT / "schemas"
TODAY = dt.date(2026, 12, 3)


def test_status_follows_the_dates():
    life = ModelLifecycle(
        "anthropic", "claude-opus-4-1", dt.date(2026, 6, 5), dt.date(2026, 8, 5), "claude-opus-4-8"
    )
    assert life.status_on(dt.date(2026, 6, 4)) == "active"
    assert life.status_on(dt.date(2026, 6, 5)) == "deprecated"
    assert life.status_on(dt.date(2026, 8, 4)) == "deprecated"
    assert life.status_on(dt.date(2026, 8, 5)) == "retired"
    assert life.describe(TODAY) == (
        "anthropic/claude-opus-4-1 retired on 2026-08-05 (successor: claude-opus-4-8)"
    )


def test_the_shipped_catalogue_covers_the_price_book_and_knows_opus_4_1_is_retired():
    catalogue = load_model_catalogue(
        SCHEMAS / "models.yaml", load_price_book(SCHEMAS / "prices.csv")
    )
    opus = catalogue.get("anthropic", "claude-opus-4-1")
    assert opus is not None and opus.retired_on == dt.date(2026, 8, 5)
    problems = lifecycle_problems(load_policy(SCHEMAS / "routing_policy.yaml"), catalogue, TODAY)
    assert [p.severity for p in problems] == ["warning"]
    assert "premium model, baseline model" in problems[0].message
    assert "claude-opus-4-1 retired on 2026-08-05" in problems[0].message


def test_policy_check_warns_and_exits_0_on_the_shipped_policy(capsys):
    assert main(["policy", "check", str(SCHEMAS / "routing_policy.yaml")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ok: ")
    assert "warning: premium model, baseline model" in captured.err
    assert "anthropic/claude-opus-4-1 retired on 2026-08-05 (successor: claude-opus-4-8)" in (
        captured.err
    )


def test_a_retired_default_model_exits_2_naming_it(tmp_path):
    text = (SCHEMAS / "routing_policy.yaml").read_text(encoding="utf-8")
    path = tmp_path / "policy.yaml"
    path.write_text(
        text.replace("default_model: glm-4.5 ", "default_model: claude-opus-4-1 "),
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "policy", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "default_model" in t)
    assert f"{path}:{line}: default_model: " in proc.stderr
    assert "default model" in proc.stderr and "claude-opus-4-1 retired on 2026-08-05" in (
        proc.stderr
    )
    assert "every call of every role would fail" in proc.stderr


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "models:\n  - provider: zai\n    model: glm-4.5\n",
            "without a lifecycle: anthropic/claude-opus-4-1,",
        ),
        (
            "models:\n  - provider: zai\n    model: glm-4.5\n  - provider: zai\n"
            "    model: glm-4.5\n",
            "zai/glm-4.5 is listed twice",
        ),
        (
            "models:\n  - provider: zai\n    model: glm-4.5\n    deprecated_on: 2026-02-01\n"
            "    retired_on: 2026-01-01\n",
            "retired_on 2026-01-01 is before deprecated_on 2026-02-01",
        ),
        ("models:\n  - provider: zai\n    model: glm-4.5\n    status: gone\n", "status"),
    ],
)
def test_a_bad_catalogue_is_refused_with_file_and_line(tmp_path, body, message):
    path = tmp_path / "models.yaml"
    path.write_text("as_of: 2026-12-03\n" + body, encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_model_catalogue(path, load_price_book(SCHEMAS / "prices.csv"))
    assert str(err.value).startswith(f"{path}:")
    assert message in str(err.value)


def test_calls_on_or_after_a_retirement_are_flagged_by_warehouse_and_report(
    make_settings, tmp_path
):
    """Opus retired (in this test's catalogue) on the checked day: its calls of that day are
    flagged, those of the day before are not."""
    catalogue = tmp_path / "models.yaml"
    catalogue.write_text(
        (SCHEMAS / "models.yaml")
        .read_text(encoding="utf-8")
        .replace("deprecated_on: 2026-06-05", "deprecated_on: 2025-06-01")
        .replace("retired_on: 2026-08-05", f"retired_on: {DAY}"),
        encoding="utf-8",
    )
    settings = make_settings(kafka=False, models=catalogue)
    lake = Lake(Path(settings.lake))
    before = DAY - dt.timedelta(days=1)
    lake.flush(0, [("llm_call", escalated_call(before)), ("llm_call", escalated_call(before))])
    lake.flush(1, [("llm_call", escalated_call(DAY)) for _ in range(3)])
    build_warehouse(settings)
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        rows = con.execute(
            "select event_date, subject, events from rpt_data_warnings "
            "where warning = 'retired_model' order by event_date"
        ).fetchall()
    assert rows == [(DAY, "anthropic/claude-opus-4-1", 3)]

    report = load_daily_report(Path(settings.warehouse), DAY)
    (retired,) = report.warnings.retired_models
    assert (retired.model, retired.retired_on, retired.calls) == ("claude-opus-4-1", DAY, 3)
    assert (
        f"3 call(s) to anthropic/claude-opus-4-1, retired on {DAY}: requests to it fail "
        "(successor: claude-opus-4-8)"
    ) in render(report, "text")
    assert load_daily_report(Path(settings.warehouse), before).warnings.retired_models == ()
