"""``modelmeter dq``: a clean day passes; each crafted defect fails exactly its own check.

The lakes here are written with pyarrow and pipeline.lake's schemas and file names, the
way the consumer writes them: one flush of one Kafka partition covers offsets
[first, last] and writes one file of that name into every table partition it touches.
"""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.dq import CHECKS, run_dq
from pipeline.dq.lakeday import flush_frame, load_lake_day, schema_problem
from pipeline.lake import REJECTED_TABLE, SCHEMAS, partition_dir
from pipeline.warehouse import build_warehouse
from tests.fixtures.dq_lake import (
    DAY,
    NOW,
    TOPIC,
    Lake,
    call,
    escalated_call,
    feedback,
    rejected,
)
from tests.fixtures.dq_lake import at as _at
from tests.fixtures.golden import DAY_A, DAY_B, write_golden_lake
from tests.fixtures.kafka_broker import REPO_ROOT

ALL_PASS_BUT_FRESHNESS = {name: "pass" for name in CHECKS} | {"freshness": "skip"}


@pytest.fixture
def settings(make_settings, tmp_path):
    return make_settings(kafka=False)


@pytest.fixture
def lake(settings) -> Lake:
    """Three days of history and the checked day, all clean."""
    lake = Lake(Path(settings.lake))
    for back in (3, 2, 1):
        lake.day(DAY - dt.timedelta(days=back))
    lake.day(DAY)
    return lake


def statuses(report) -> dict[str, str]:
    return {r.name: r.status for r in report.results}


def failures(report, name: str) -> list[str]:
    return next(r.failures for r in report.results if r.name == name)


def run(settings, day: dt.date = DAY, now: dt.datetime = NOW, **kwargs):
    build_warehouse(settings) if not Path(settings.warehouse).exists() else None
    return run_dq(settings, day, now=now, data_docs=False, **kwargs)


def assert_only_fails(report, name: str) -> list[str]:
    """``name`` failed and every other check passed (freshness skipped: a past day)."""
    assert statuses(report) == ALL_PASS_BUT_FRESHNESS | {name: "fail"}, report.results
    assert report.exit_code == 1
    return failures(report, name)


# --- a clean day ---------------------------------------------------------------------------


def test_clean_day_passes_every_check(settings, lake):
    """A clean past day: every check passes, freshness is skipped (not today), exit code 0."""
    report = run(settings)
    assert statuses(report) == ALL_PASS_BUT_FRESHNESS
    assert report.exit_code == 0


def test_clean_day_cli_exits_0_and_writes_json_and_data_docs(settings, lake, tmp_path, capsys):
    """``modelmeter dq --date D``: exit 0, the summary on stdout, the JSON result and the
    great-expectations data docs next to the lake by default."""
    build_warehouse(settings)
    code = main(
        [
            "dq",
            "--date",
            DAY.isoformat(),
            "--lake",
            str(settings.lake),
            "--warehouse",
            str(settings.warehouse),
            "--policy",
            str(settings.policy),
            "--prices",
            str(settings.prices),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "14 checks: 13 passed, 0 failed, 1 skipped -> PASS" in out
    result = json.loads((tmp_path / "dq" / f"dq-{DAY}.json").read_text())
    assert result["status"] == "pass" and result["exit_code"] == 0
    assert [c["name"] for c in result["checks"]] == list(CHECKS)
    docs = tmp_path / "dq" / "data_docs" / "index.html"
    assert docs.exists() and f"data docs: {docs.resolve()}" in out
    assert "llm_call" in docs.read_text()


# --- the acceptance case: an unpriced model --------------------------------------------------


def test_unpriced_model_fails_naming_model_and_calls(settings, lake, tmp_path, capsys):
    """A day holding 12 calls to a model without a price exits 1 and names the model."""
    lake.flush(
        2, [("llm_call", call(provider="anthropic", model="claude-opus-9")) for _ in range(12)]
    )
    build_warehouse(settings)
    code = main(
        [
            "dq",
            "--date",
            DAY.isoformat(),
            "--lake",
            str(settings.lake),
            "--warehouse",
            str(settings.warehouse),
            "--policy",
            str(settings.policy),
            "--prices",
            str(settings.prices),
            "--output",
            str(tmp_path / "r.json"),
            "--no-data-docs",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  every_call_priced" in out
    assert "unpriced: anthropic/claude-opus-9 (12 calls)" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["failed"] == ["every_call_priced"]


def test_unpriced_counts_are_exact_beyond_the_values_great_expectations_samples(settings):
    """250 unpriced calls are counted as 250 (great-expectations itself samples 200 values)."""
    lake = Lake(Path(settings.lake))
    lake.day(DAY)
    lake.flush(2, [("llm_call", call(model="glm-9", minute=i)) for i in range(250)])
    report = run(settings)
    assert failures(report, "every_call_priced") == ["unpriced: zai/glm-9 (250 calls)"]


def test_call_before_its_price_takes_effect_is_unpriced(settings, lake, tmp_path):
    """Prices are looked up at occurred_at: a price from noon leaves the morning unpriced."""
    book = (
        (REPO_ROOT / "schemas" / "prices.csv")
        .read_text()
        .replace("zai,glm-4.5,2025-01-01T00:00:00Z", f"zai,glm-4.5,{DAY}T12:00:00Z")
    )
    (tmp_path / "prices.csv").write_text(book)
    report = run(settings.with_overrides(prices=tmp_path / "prices.csv"))
    assert statuses(report)["every_call_priced"] == "fail"
    assert failures(report, "every_call_priced")[0].startswith("unpriced: zai/glm-4.5 (")


def test_call_without_a_baseline_price_is_unpriced(settings, lake, tmp_path):
    """No price for the policy's baseline model: no baseline cost, so every call is unpriced
    (the Opus calls for their own model, the GLM calls for the baseline)."""
    book = (
        "\n".join(
            line
            for line in (REPO_ROOT / "schemas" / "prices.csv").read_text().splitlines()
            if ",claude-opus-4-1," not in line
        )
        + "\n"
    )
    (tmp_path / "prices.csv").write_text(book)
    settings = settings.with_overrides(prices=tmp_path / "prices.csv")
    (message,) = assert_only_fails(run(settings), "every_call_priced")
    assert message == (
        "unpriced: baseline anthropic/claude-opus-4-1 (28 calls), "
        "anthropic/claude-opus-4-1 (4 calls)"
    )


# --- every other check, one crafted defect each ---------------------------------------------


def test_wrong_column_type_fails_schema(settings, lake):
    """A lake file whose latency_ms is int32 instead of int64 fails `schema`, naming the file."""
    build_warehouse(settings)
    path = sorted(partition_dir(settings.lake, "llm_call", DAY).iterdir())[0]
    table = pq.read_table(path)
    table = table.set_column(
        table.schema.get_field_index("latency_ms"),
        "latency_ms",
        table.column("latency_ms").cast(pa.int32()),
    )
    pq.write_table(table, path)
    (message,) = assert_only_fails(run(settings), "schema")
    assert path.name in message and "latency_ms is int32, expected int64" in message


def test_schema_problem_names_missing_extra_and_mistyped_columns():
    """schema_problem lists missing and unexpected columns and wrong types; None when equal."""
    assert schema_problem(SCHEMAS["llm_call"], "llm_call") is None
    schema = SCHEMAS["task_feedback"].remove(0).append(pa.field("extra", pa.string()))
    schema = schema.set(
        schema.get_field_index("satisfaction"), pa.field("satisfaction", pa.string())
    )
    problem = schema_problem(schema, "task_feedback")
    assert problem == (
        "missing column event_id; unexpected column extra; satisfaction is string, expected int32"
    )


def test_null_key_fails_keys_not_null(settings, lake):
    """A call landed with a null agent_id fails `keys_not_null` naming the column."""
    lake.flush(2, [("llm_call", call(agent_id=None))], nullable=True)
    (message,) = assert_only_fails(run(settings), "keys_not_null")
    assert message.startswith("null in non-nullable column(s): agent_id (1 calls)")


def test_duplicate_event_id_in_facts_fails_event_id_unique(settings, lake):
    """A warehouse whose fct_llm_calls repeats an event_id of the day fails `event_id_unique`."""
    build_warehouse(settings)
    con = duckdb.connect(str(settings.warehouse))
    con.execute(
        "insert into fct_llm_calls select * from fct_llm_calls where event_date = ? limit 1", [DAY]
    )
    con.close()
    (message,) = assert_only_fails(run(settings), "event_id_unique")
    assert message.startswith("event_id repeated in fct_llm_calls")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            call(DAY, 300, output_tokens=100_000_001),
            "output_tokens out of the contract's bounds: 100000001",
        ),
        (feedback(DAY, 300, satisfaction=0), "satisfaction outside 1..5: 0"),
    ],
)
def test_out_of_bounds_value_fails_value_bounds(settings, lake, row, expected):
    """Token counts above 100,000,000 or a satisfaction of 0 fail `value_bounds`."""
    lake.flush(2, [(row["event_type"], row)])
    (message,) = assert_only_fails(run(settings), "value_bounds")
    assert message.startswith(expected)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            escalated_call(escalation_trigger=None),
            "escalated call without escalation_trigger: 1 calls",
        ),
        (
            escalated_call(escalated=False),
            "escalation_trigger on a call that is not escalated: three_plus_services (1 calls)",
        ),
    ],
)
def test_escalated_without_trigger_or_trigger_without_escalation_fails(
    settings, lake, row, expected
):
    """escalated <=> escalation_trigger: either half broken fails `escalation_consistency`."""
    lake.flush(2, [("llm_call", row)])
    (message,) = assert_only_fails(run(settings), "escalation_consistency")
    assert message.startswith(expected)


def test_absurd_cache_tokens_fail_cache_tokens_sane(settings, lake):
    """3M cache-read tokens on one call (beyond any context window) fail `cache_tokens_sane`."""
    lake.flush(2, [("llm_call", call(cache_read_tokens=3_000_000))])
    (message,) = assert_only_fails(run(settings), "cache_tokens_sane")
    assert message.startswith("input + cache tokens beyond any context window: 3004000 (1 calls)")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (call(role="hacker"), "role unknown to the policy: hacker (1 calls)"),
        (feedback(role="hacker"), "role unknown to the policy: hacker (1 events)"),
        (
            escalated_call(escalation_trigger="gut_feeling"),
            "escalation_trigger unknown to the policy: gut_feeling",
        ),
        (
            escalated_call(escalation_trigger="multi_service_conflict"),
            "escalation_trigger not a trigger of the call's role (role:trigger): architect:multi_service_conflict",
        ),
    ],
)
def test_unknown_role_or_trigger_fails_known_roles_triggers(settings, lake, row, expected):
    """Roles and triggers outside the policy (or a trigger of another role) fail `known_roles_triggers`."""
    lake.flush(2, [(row["event_type"], row)])
    report = run(settings)
    messages = assert_only_fails(report, "known_roles_triggers")
    assert any(m.startswith(expected) for m in messages), messages


def test_event_in_the_wrong_partition_fails_occurred_at_in_partition(settings, lake):
    """A call of the next day landed in the day's partition fails `occurred_at_in_partition`."""
    lake.flush(2, [("llm_call", call(DAY + dt.timedelta(days=1), 0))], event_day=DAY)
    (message,) = assert_only_fails(run(settings), "occurred_at_in_partition")
    assert message.startswith("occurred_at outside the partition's date: 2025-06-11T00:00:00+00:00")


def _flush_items(n: int) -> list[tuple[str, dict]]:
    return [("llm_call", call(DAY, 900 + i)) for i in range(n)]


def test_gap_between_flushes_fails_reconciliation(settings, lake):
    """Offsets 5 past the previous flush's end (lost events) fail `reconciliation`."""
    name = lake.flush(0, _flush_items(3), first=lake.next_offset[0] + 5)
    messages = assert_only_fails(run(settings), "reconciliation")
    assert messages == [
        f"gap (>0 lost) or overlap (<0 double) with the previous flush: 1 flushes: "
        f"{name} (gap_before=5) (expected 0)",
        "gap (>0 lost) or overlap (<0 double) with the next flush: 1 flushes: "
        f"{TOPIC}+0+{name.first_offset - 14:020d}+{name.first_offset - 6:020d}.parquet "
        "(gap_after=5) (expected 0)",
    ]


def test_overlapping_flushes_fail_reconciliation(settings, lake):
    """A flush re-covering the previous flush's last 3 offsets (double counting) fails."""
    lake.flush(1, _flush_items(4), first=lake.next_offset[1] - 3)
    messages = assert_only_fails(run(settings), "reconciliation")
    assert any("(gap_before=-3)" in m for m in messages), messages


def test_missing_file_of_a_flush_fails_reconciliation(settings, lake):
    """A flush whose task_feedback file is gone leaves its offsets unaccounted for."""
    name = lake.flush(2, _flush_items(3) + [("task_feedback", feedback())])
    (partition_dir(settings.lake, "task_feedback", DAY) / str(name)).unlink()
    (message,) = assert_only_fails(run(settings), "reconciliation")
    assert message == (
        f"offsets of the flush found in no file (lost events): 1 flushes: {name} "
        "(missing_offsets=1) (expected 0)"
    )


def test_offset_landed_twice_fails_reconciliation(settings, lake):
    """The same offset in two files of one flush (a row in two tables) is double counting."""
    name = lake.flush(2, _flush_items(3))
    path = partition_dir(settings.lake, "llm_call", DAY) / str(name)
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)
    (message,) = assert_only_fails(run(settings), "reconciliation")
    assert "(duplicate_offsets=1)" in message


def test_flush_frame_reads_every_file_of_a_flush_across_days_and_tables(settings):
    """One flush split over two event days and the rejected table reconciles as one."""
    lake = Lake(Path(settings.lake))
    name = lake.flush(
        0,
        [
            ("llm_call", call(DAY)),
            ("llm_call", call(DAY - dt.timedelta(days=1))),
            (REJECTED_TABLE, rejected()),
            ("task_feedback", feedback()),
        ],
    )
    frame = flush_frame(Path(settings.lake), {str(name)})
    row = frame.iloc[0].to_dict()
    assert row["rows"] == 4 and row["rejected_rows"] == 1 and row["expected_offsets"] == 4
    assert row["missing_offsets"] == row["duplicate_offsets"] == row["foreign_offsets"] == 0
    assert pd.isna(row["gap_before"]) and pd.isna(row["gap_after"])  # no neighbour flush


def test_flush_frame_from_the_days_loaded_offsets_equals_reading_every_file(settings):
    """The kafka_offset values load_lake_day kept for the day's files (so dq reads each file
    once) reconcile exactly as reading every file of the flush, the other day's included."""
    lake = Lake(Path(settings.lake))
    name = lake.flush(
        0,
        [
            ("llm_call", call(DAY)),
            ("llm_call", call(DAY - dt.timedelta(days=1))),
            (REJECTED_TABLE, rejected()),
            ("task_feedback", feedback()),
        ],
    )
    lake.flush(0, [("llm_call", call(DAY)), ("task_feedback", feedback())])
    day = load_lake_day(Path(settings.lake), DAY)
    assert sorted(day.offsets) == sorted(p for paths in day.paths.values() for p in paths)
    assert sorted(o for offsets in day.offsets.values() for o in offsets) == [0, 2, 3, 4, 5]
    read = flush_frame(Path(settings.lake), day.flush_names)
    kept = flush_frame(Path(settings.lake), day.flush_names, known_offsets=day.offsets)
    pd.testing.assert_frame_equal(kept, read)
    assert read["rows"].tolist() == [4, 2] and read["flush"].iloc[0] == str(name)


def test_stale_warehouse_fails_warehouse_complete(settings, lake):
    """Events landed after the warehouse was built fail `warehouse_complete`, naming them."""
    build_warehouse(settings)
    late = call(DAY, 1000)
    lake.flush(2, [("llm_call", late)])
    (message,) = assert_only_fails(run(settings), "warehouse_complete")
    assert (
        message == f"event_id missing from fct_llm_calls: 1 calls: {late['event_id']} (expected)"
        or message.startswith(f"event_id missing from fct_llm_calls: 1 calls: {late['event_id']}")
    )


def test_rejected_rate_above_threshold_fails(settings, settings_lake_with_rejects):
    """2 dead-lettered messages among 38 (5.3 %) fail `rejected_rate` (threshold 1 %)."""
    (message,) = assert_only_fails(run(settings), "rejected_rate")
    assert message == (
        "rejected-event rate 0.05263 (expected 0..0.01) [rejected_messages=2, messages=38]"
    )


@pytest.fixture
def settings_lake_with_rejects(settings):
    lake = Lake(Path(settings.lake))
    for back in (3, 2, 1):
        lake.day(DAY - dt.timedelta(days=back))
    lake.day(DAY, rejects=2)
    return lake


def test_volume_far_below_trailing_median_fails(settings):
    """8 events against a trailing median of 36 fail `volume`."""
    lake = Lake(Path(settings.lake))
    for back in (3, 2, 1):
        lake.day(DAY - dt.timedelta(days=back))
    lake.day(DAY, calls=0)
    (message,) = assert_only_fails(run(settings), "volume")
    assert message == (
        "events / trailing median 0.2222 (expected 0.5..2) [events=8, trailing_median_events=36]"
    )


def test_volume_is_skipped_without_history(settings):
    """With fewer than 3 trailing days of data the volume check is skipped, not failed."""
    Lake(Path(settings.lake)).day(DAY)
    report = run(settings)
    assert statuses(report) == ALL_PASS_BUT_FRESHNESS | {"volume": "skip"}
    assert report.exit_code == 0
    assert (
        next(r.reason for r in report.results if r.name == "volume")
        == "0 day(s) with data in the trailing 7, need 3"
    )


@pytest.mark.parametrize(
    ("now", "status"),
    [
        (_at(DAY, 13 * 60 + 40), "pass"),  # newest event 13:22, checked 18 minutes later
        (_at(DAY, 23 * 60), "fail"),  # nothing for 9.6 hours
    ],
)
def test_freshness_of_today(settings, lake, now, status):
    """Checking today: the newest event must be under 60 minutes old; volume is skipped."""
    report = run(settings, now=now)
    expected = {name: "pass" for name in CHECKS} | {"volume": "skip", "freshness": status}
    assert statuses(report) == expected
    if status == "fail":
        assert failures(report, "freshness")[0].startswith("minutes since the newest event 57")


# --- cannot run: exit 2 with one line --------------------------------------------------------


def _dq(settings, *extra: str) -> list[str]:
    return [
        "dq",
        "--lake",
        str(settings.lake),
        "--warehouse",
        str(settings.warehouse),
        "--policy",
        str(settings.policy),
        "--prices",
        str(settings.prices),
        "--no-data-docs",
        *extra,
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--date", "2025-13-01"], "modelmeter: error: --date 2025-13-01: not a date (YYYY-MM-DD)"),
        (["--date", "2025-06-09"], "modelmeter: error: no lake partition for 2025-06-09 in "),
    ],
)
def test_cannot_run_exits_2_with_one_line(settings, args, error, capsys):
    """A bad date or a day without any lake file: exit 2, one line naming the problem."""
    Lake(Path(settings.lake)).day(DAY)
    assert main(_dq(settings, *args)) == 2
    err = capsys.readouterr().err
    assert err.startswith(error) and err.count("\n") == 1, err


def test_missing_lake_exits_2(settings, capsys):
    """No lake directory at all: exit 2 naming it."""
    assert main(_dq(settings, "--date", DAY.isoformat())) == 2
    assert (
        capsys.readouterr().err == f"modelmeter: error: no lake at {settings.lake} "
        "(set MODELMETER_LAKE or --lake)\n"
    )


def test_invalid_suite_file_exits_2_naming_it(settings, tmp_path, capsys):
    """The suites are read from files: an unknown expectation type is a one-line exit 2."""
    Lake(Path(settings.lake)).day(DAY)
    suites = tmp_path / "expectations"
    suites.mkdir()
    for path in (REPO_ROOT / "schemas" / "expectations").glob("*.json"):
        (suites / path.name).write_text(path.read_text())
    broken = json.loads((suites / "flushes.json").read_text())
    broken["expectations"][0]["type"] = "expect_offsets_to_be_nice"
    (suites / "flushes.json").write_text(json.dumps(broken))
    (tmp_path / "dq.yaml").write_text("expectations_dir: expectations\n")
    assert (
        main(_dq(settings, "--date", DAY.isoformat(), "--dq-config", str(tmp_path / "dq.yaml")))
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(
        f"modelmeter: error: {suites / 'flushes.json'}: invalid expectation suite"
    )
    assert "expect_offsets_to_be_nice" in err


def test_invalid_threshold_exits_2_naming_file_and_field(settings, tmp_path, capsys):
    """Thresholds are data: a rejected-rate threshold above 1 is a one-line exit 2."""
    Lake(Path(settings.lake)).day(DAY)
    config = tmp_path / "dq.yaml"
    config.write_text(
        f"expectations_dir: {REPO_ROOT / 'schemas' / 'expectations'}\nmax_rejected_rate: 2\n"
    )
    assert main(_dq(settings, "--date", DAY.isoformat(), "--dq-config", str(config))) == 2
    assert capsys.readouterr().err == (
        f"modelmeter: error: {config}: max_rejected_rate: Input should be less than or equal to 1\n"
    )


def test_every_check_has_expectations_in_the_suite_files():
    """Each named check is backed by at least one expectation of the repo's suite files."""
    from pipeline.dq.gx import load_suite

    checks = set()
    for path in (REPO_ROOT / "schemas" / "expectations").glob("*.json"):
        checks |= load_suite(path).checks
    assert checks == set(CHECKS)


# --- the golden lake (tests/fixtures/golden.py) -------------------------------------------------------


def test_golden_lake_clean_day_passes_and_cost_day_names_its_defects(settings):
    """The hand-made golden lake: its clean "share day" passes; its "cost day" fails exactly
    on the defects planted in it (an unpriced model, an unknown role and trigger, a rejected
    message among 12) and names them."""
    write_golden_lake(Path(settings.lake))
    build_warehouse(settings)
    clean = run(settings, DAY_B)
    assert clean.exit_code == 0
    assert {r.status for r in clean.results} == {"pass", "skip"}
    cost_day = run(settings, DAY_A)
    assert [r.name for r in cost_day.results if r.status == "fail"] == [
        "every_call_priced",
        "known_roles_triggers",
        "rejected_rate",
    ]
    assert failures(cost_day, "every_call_priced") == ["unpriced: zai/glm-5-preview (1 calls)"]
    assert sorted(failures(cost_day, "known_roles_triggers")) == [
        "escalation_trigger not a trigger of the call's role (role:trigger): architect:gut_feeling (1 calls)",
        "escalation_trigger unknown to the policy: gut_feeling (1 calls)",
        "role unknown to the policy: tester (1 calls)",
    ]


# --- untrusted strings: values of the data in the summary, the JSON result, the data docs -----


class _Page(HTMLParser):
    """Tags with their attributes, script bodies and text (entities decoded) of a page."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def test_hostile_values_are_data_in_the_summary_the_json_result_and_the_data_docs(
    settings, lake, tmp_path, capsys
):
    """Every HOSTILE value as a role, model, provider and trigger: the summary and the JSON
    result name each one visibly (no raw control, bidi or zero-width character, distinct
    values distinct); great-expectations' data docs show each as text, no tag made of it."""
    from pipeline.safe_text import visible
    from tests.fixtures.hostile_text import HOSTILE, RAW, only_printable

    items = []
    for v in HOSTILE:
        items += [
            ("llm_call", call(role=v)),
            ("llm_call", call(model=v)),
            ("llm_call", call(provider=v)),
            ("llm_call", escalated_call(escalation_trigger=v)),
            ("task_feedback", feedback(role=v)),
        ]
    items.append(
        (
            "llm_call",
            escalated_call(
                event_id="id-<img src=x onerror=alert(2)>\x1b[2J", escalation_trigger=None
            ),
        )
    )
    lake.flush(2, items)
    build_warehouse(settings)
    config = tmp_path / "dq.yaml"
    config.write_text(
        f"expectations_dir: {REPO_ROOT / 'schemas' / 'expectations'}\nmax_listed_values: 100\n"
    )
    docs = tmp_path / "docs"
    code = main(
        [
            "dq",
            "--lake",
            str(settings.lake),
            "--warehouse",
            str(settings.warehouse),
            "--policy",
            str(settings.policy),
            "--prices",
            str(settings.prices),
            "--date",
            DAY.isoformat(),
            "--dq-config",
            str(config),
            "--output",
            str(tmp_path / "r.json"),
            "--data-docs",
            str(docs),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert only_printable(out) and not RAW.search(out)
    roles = next(line for line in out.splitlines() if "role unknown to the policy" in line)
    for v in HOSTILE:
        assert f" {visible(v)} (1 calls)" in roles, v  # each once, distinct
        assert f"zai/{visible(v)} (1 calls)" in out and f"{visible(v)}/glm-4.5 (1 calls)" in out
    assert roles.count(" (1 calls)") == len(HOSTILE)
    assert "id-<img src=x onerror=alert(2)>\\x1b[2J" in out  # listed by its event_id

    result_text = (tmp_path / "r.json").read_text()
    assert result_text.isascii() and only_printable(result_text)
    result = json.loads(result_text)
    failures_of = {c["name"]: c["failures"] for c in result["checks"]}
    triggers = next(
        m
        for m in failures_of["known_roles_triggers"]
        if m.startswith("escalation_trigger unknown to the policy")
    )
    assert all(f" {visible(v)} (1 calls)" in triggers for v in HOSTILE)

    pages = list(docs.rglob("*.html"))
    assert pages
    shown = []
    for path in pages:
        page = _Page(path.read_text(encoding="utf-8"))
        assert not RAW.search(path.read_text(encoding="utf-8")), path
        for tag, attrs in page.tags:  # no tag and no handler made of a value
            assert "onerror" not in attrs and attrs.get("src") != "x", (path, tag, attrs)
            assert tag not in ("img", "script") or "alert" not in str(attrs), (path, tag)
        assert not any("alert(" in s for s in page.scripts), path
        shown.append("\n".join(page.text))
    text = "\n".join(shown)
    for v in HOSTILE:  # shown as text, escapes visible
        assert visible(v) in text, v


def test_values_handed_to_great_expectations_keep_membership_uniqueness_and_counts():
    """The map to great-expectations' values is injective: a literal ``\\x1b`` and an ESC
    stay two values (html_text alone would merge them), a literal ``&lt;b&gt;`` is not
    ``<b>``; the summary names the original values, made visible."""
    from pipeline.dq.gx import GxRunner, Suite
    from pipeline.safe_text import visible
    from tests.fixtures.hostile_text import HOSTILE

    literal = visible(HOSTILE[0])  # "\\x1b[31mred..." typed out
    frame = pd.DataFrame(
        {
            "key": [*HOSTILE, literal, "&lt;b&gt;"],
            "role": [*HOSTILE, literal, HOSTILE[1]],
            "provider": ["<b>", "a|b", *(["a|b"] * (len(HOSTILE) - 1)), "&lt;b&gt;"],
        }
    )
    expectations = [
        {
            "type": "expect_column_values_to_be_unique",
            "kwargs": {"column": "key"},
            "meta": {"check": "event_id_unique", "explain": "repeated"},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "role", "value_set": {"$PARAMETER": "known"}},
            "meta": {"check": "known_roles_triggers", "explain": "unknown role"},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "provider", "value_set": ["<b>", "a|b"]},
            "meta": {"check": "known_roles_triggers", "explain": "unknown provider"},
        },
    ]
    suite = Suite(
        Path("hostile.json"), "hostile", {"name": "hostile", "expectations": expectations}
    )
    runner = GxRunner(docs_dir=None, run_name="hostile")
    outcomes = runner.validate(
        "hostile", frame, suite, parameters={"known": list(HOSTILE)}, index_column="key"
    )
    assert [(o.expectation, o.success) for o in outcomes] == [
        ("expect_column_values_to_be_unique", True),
        ("expect_column_values_to_be_in_set", False),
        ("expect_column_values_to_be_in_set", False),
    ]
    assert outcomes[1].message == f"unknown role: {literal} (1 rows)"
    assert outcomes[2].message == "unknown provider: &lt;b&gt; (1 rows)"


def test_skip_reasons_naming_a_path_are_one_printable_line(settings, lake, tmp_path):
    """A reason quoting a path (no warehouse at ...) is visible too, in summary and JSON."""
    from pipeline.dq.output import render_summary
    from tests.fixtures.hostile_text import RAW

    odd = settings.with_overrides(warehouse=tmp_path / "w\x1b[31m\u202e.duckdb")
    report = run_dq(odd, DAY, now=NOW, data_docs=False, output=tmp_path / "r.json")
    reason = next(r.reason for r in report.results if r.name == "warehouse_complete")
    assert reason == f"no warehouse at {tmp_path}/w\\x1b[31m\\u202e.duckdb (run `modelmeter build`)"
    summary = render_summary(report)
    assert not RAW.search(summary) and "w\\x1b[31m\\u202e.duckdb" in summary
    assert (tmp_path / "r.json").read_text().isascii()
