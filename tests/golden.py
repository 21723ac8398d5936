"""A small hand-made lake whose every cost is worked out by hand below (issue 5's golden set).

    expected = write_golden_lake(tmp_path / "lake")      # lake for the repo's policy
    expected.cost["a-01"]                                # Decimal USD, default price book
    expected.kpi_daily[(date(2025, 6, 2), "cost_reduction_pct")]  # (actual, status)

Three days of June 2025, priced with ``schemas/prices.csv`` (and, for the midday price
change, :data:`MIDDAY_PRICES_CSV`), roles and triggers of ``schemas/routing_policy.yaml``:

- 2025-06-01 "cost day": every cache token kind, events either side of 12:00 (the midday
  price change of :data:`MIDDAY_PRICES_CSV`), an unpriced model, an unknown role, an unknown
  trigger, a producer-retry duplicate, a rejected message.
- 2025-06-02 "share day": 19 default-model calls + 1 escalated Opus call, so that
  default_model_share is exactly 0.95 and cost_reduction_pct exactly 0.35 (both met).
- 2025-06-03 "review day": 20 escalated tasks with verdicts, one a false positive, so the
  false-positive rate is exactly 0.05 (missed: the target is < 0.05); review_consistency
  exactly 0.95 and satisfaction_avg exactly 4.0 (met); a superseded verdict; a duplicate
  feedback event.

The lake follows pipeline/lake.py: rows carry kafka_topic/partition/offset and ingested_at,
one flush of one partition writes files of the same offsets-derived name into every table
directory it touches, and consecutive flushes of a partition abut.

Keep this module stable: the report and data-quality tests rely on it.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.lake import (
    LLM_CALL_SCHEMA,
    REJECTED_SCHEMA,
    REJECTED_TABLE,
    TASK_FEEDBACK_SCHEMA,
    FileName,
    partition_dir,
    write_table_atomic,
)

__all__ = [
    "GOLDEN_TOPIC",
    "DAY_A",
    "DAY_B",
    "DAY_C",
    "MIDDAY_PRICES_CSV",
    "GoldenExpected",
    "llm_call",
    "task_feedback",
    "write_events_lake",
    "write_golden_lake",
    "write_midday_price_book",
]

GOLDEN_TOPIC = "agent-usage"
DAY_A = dt.date(2025, 6, 1)
DAY_B = dt.date(2025, 6, 2)
DAY_C = dt.date(2025, 6, 3)
UTC = dt.UTC
D = Decimal
MTOK = D(1_000_000)

# The list prices of schemas/prices.csv until 2025-06-01T12:00Z, then cheaper GLM-4.5 and
# Opus 4.1 prices; the other models keep their list prices.
MIDDAY_PRICES_CSV = """\
provider,model,effective_from,effective_to,usd_per_mtok_input,usd_per_mtok_output,usd_per_mtok_cache_read,usd_per_mtok_cache_write_5m,usd_per_mtok_cache_write_1h
zai,glm-4.5,2025-01-01T00:00:00Z,2025-06-01T12:00:00Z,0.60,2.20,0.11,0,0
zai,glm-4.5,2025-06-01T12:00:00Z,,0.40,1.60,0.08,0,0
zai,glm-4.5-air,2025-01-01T00:00:00Z,,0.20,1.10,0.03,0,0
anthropic,claude-opus-4-1,2025-01-01T00:00:00Z,2025-06-01T12:00:00Z,15,75,1.50,18.75,30
anthropic,claude-opus-4-1,2025-06-01T12:00:00Z,,12,60,1.20,15,24
anthropic,claude-sonnet-4-5,2025-01-01T00:00:00Z,,3,15,0.30,3.75,6
anthropic,claude-opus-4-5,2025-01-01T00:00:00Z,,5,25,0.50,6.25,10
"""


def write_midday_price_book(path: Path) -> Path:
    """Write :data:`MIDDAY_PRICES_CSV` to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MIDDAY_PRICES_CSV, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Event rows and a lake writer that behaves like the consumer
# ---------------------------------------------------------------------------------------------


def llm_call(event_id: str, at: dt.datetime, role: str, provider: str, model: str, *,
             task_id: str | None = None, agent_id: str | None = None, input_tokens: int = 0,
             output_tokens: int = 0, cache_read_tokens: int = 0, cache_write_5m_tokens: int = 0,
             cache_write_1h_tokens: int = 0, escalated: bool = False,
             escalation_trigger: str | None = None, status: str = "ok",
             latency_ms: int | None = 1000, policy_version: str | None = "2026.11.1",
             task_type: str | None = None) -> dict[str, Any]:
    """One llm_call lake row (without the kafka_* columns, which the writer adds)."""
    return {
        "event_id": event_id, "event_type": "llm_call", "schema_version": 1, "occurred_at": at,
        "agent_id": agent_id or f"{role}-1", "task_id": task_id or f"t-{event_id}", "role": role,
        "provider": provider, "model": model, "input_tokens": input_tokens,
        "output_tokens": output_tokens, "cache_read_tokens": cache_read_tokens,
        "cache_write_5m_tokens": cache_write_5m_tokens,
        "cache_write_1h_tokens": cache_write_1h_tokens, "latency_ms": latency_ms,
        "status": status, "escalated": escalated, "escalation_trigger": escalation_trigger,
        "policy_version": policy_version, "task_type": task_type,
    }


def task_feedback(event_id: str, at: dt.datetime, task_id: str, *, role: str = "critic",
                  agent_id: str | None = None, satisfaction: int | None = None,
                  escalation_needed: bool | None = None,
                  review_consistent: bool | None = None) -> dict[str, Any]:
    """One task_feedback lake row (without the kafka_* columns)."""
    return {
        "event_id": event_id, "event_type": "task_feedback", "schema_version": 1,
        "occurred_at": at, "agent_id": agent_id or f"{role}-1", "task_id": task_id, "role": role,
        "satisfaction": satisfaction, "escalation_needed": escalation_needed,
        "review_consistent": review_consistent,
    }


def write_events_lake(lake: Path, events: Iterable[Mapping[str, Any]], *,
                      duplicates: Iterable[str] = (),
                      rejected: Iterable[tuple[dt.datetime, bytes, str]] = (),
                      topic: str = GOLDEN_TOPIC, partitions: int = 3) -> dict[str, int]:
    """Land ``events`` (llm_call / task_feedback rows) in ``lake`` the way the consumer would.

    Each event goes to partition crc32(task_id) % ``partitions`` (key = task_id); offsets
    follow occurred_at. Every event id in ``duplicates`` lands a second time right after the
    first copy (a producer retry: same event_id, next offset). ``rejected`` messages
    (received_at, raw value, error) land in ``_rejected`` on partition 0. One flush per
    (partition, UTC day) writes one file per table directory it touches, all with the
    flush's offsets-derived name. Returns the number of rows written per table.
    """
    repeat = set(duplicates)
    messages: list[tuple[dt.datetime, int, str, dict[str, Any]]] = []
    for event in events:
        table = event["event_type"]
        copies = 2 if event["event_id"] in repeat else 1
        partition = zlib.crc32(str(event["task_id"]).encode()) % partitions
        for _ in range(copies):
            messages.append((event["occurred_at"], partition, table, dict(event)))
    for received_at, raw, error in rejected:
        messages.append((received_at, 0, REJECTED_TABLE,
                         {"raw_key": None, "raw_value": raw, "error": error}))
    messages.sort(key=lambda m: (m[0], m[1]))

    next_offset: dict[int, int] = defaultdict(int)
    flushes: dict[tuple[int, dt.date], list[tuple[str, dt.date, dict[str, Any]]]] = defaultdict(list)
    for at, partition, table, row in messages:
        row.update(kafka_topic=topic, kafka_partition=partition,
                   kafka_offset=next_offset[partition], ingested_at=at + dt.timedelta(seconds=2))
        next_offset[partition] += 1
        day = at.astimezone(UTC).date()
        flushes[(partition, day)].append((table, day, row))

    schemas = {"llm_call": LLM_CALL_SCHEMA, "task_feedback": TASK_FEEDBACK_SCHEMA,
               REJECTED_TABLE: REJECTED_SCHEMA}
    written: dict[str, int] = defaultdict(int)
    for (partition, _day), rows in sorted(flushes.items()):
        offsets = [row["kafka_offset"] for _, _, row in rows]
        name = str(FileName(topic, partition, min(offsets), max(offsets)))
        by_dir: dict[tuple[str, dt.date], list[dict[str, Any]]] = defaultdict(list)
        for table, day, row in rows:
            by_dir[(table, day)].append(row)
        for (table, day), table_rows in by_dir.items():
            schema = schemas[table]
            data = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in table_rows],
                                        schema=schema)
            write_table_atomic(data, partition_dir(lake, table, day) / name)
            written[table] += len(table_rows)
    return dict(written)


# ---------------------------------------------------------------------------------------------
# The golden set
# ---------------------------------------------------------------------------------------------


@dataclass
class GoldenExpected:
    """Hand-computed figures of the golden lake (USD, Decimal, exact)."""

    lake: Path
    dates: tuple[dt.date, ...]
    #: event_id -> cost / baseline with schemas/prices.csv; None = unpriced
    cost: dict[str, Decimal | None]
    baseline: dict[str, Decimal | None]
    #: the same with MIDDAY_PRICES_CSV
    midday_cost: dict[str, Decimal | None]
    midday_baseline: dict[str, Decimal | None]
    #: event_id -> (event_date, role, provider, model, escalated, escalation_trigger)
    calls: dict[str, tuple[dt.date, str, str, str, bool, str | None]]
    #: distinct feedback events
    feedback_events: int
    #: rows landed per lake table (duplicates included)
    landed: dict[str, int]
    duplicate_event_ids: tuple[str, ...]
    rejected_events: int
    #: (event_date, kpi) -> (actual, status) with schemas/prices.csv and the repo policy
    kpi_daily: dict[tuple[dt.date, str], tuple[Decimal | None, str]] = field(default_factory=dict)
    unknown_roles: tuple[str, ...] = ("tester",)
    unknown_triggers: tuple[str, ...] = ("architect/gut_feeling",)
    unpriced_models: tuple[str, ...] = ("zai/glm-5-preview",)


def _at(day: dt.date, hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, us, tzinfo=UTC)


def write_golden_lake(lake_dir: Path) -> GoldenExpected:
    """Write the golden lake under ``lake_dir`` and return its hand-computed expectations."""
    events: list[dict[str, Any]] = []
    cost: dict[str, Decimal | None] = {}
    baseline: dict[str, Decimal | None] = {}
    midday_cost: dict[str, Decimal | None] = {}
    midday_baseline: dict[str, Decimal | None] = {}

    def add(call: dict[str, Any], c: str | None, b: str | None, mc: str | None, mb: str | None) -> None:
        events.append(call)
        eid = call["event_id"]
        cost[eid], baseline[eid] = (D(c) if c else None), (D(b) if b else None)
        midday_cost[eid], midday_baseline[eid] = (D(mc) if mc else None), (D(mb) if mb else None)

    # --- 2025-06-01, the cost day ------------------------------------------------------------
    # Prices per million tokens (input / output / cache read / cache write 5m / 1h):
    #   glm-4.5          0.60 / 2.20 / 0.11 / 0 / 0        midday book from 12:00: 0.40 / 1.60 / 0.08
    #   glm-4.5-air      0.20 / 1.10 / 0.03 / 0 / 0        (unchanged)
    #   claude-opus-4-1  15 / 75 / 1.50 / 18.75 / 30       midday book from 12:00: 12 / 60 / 1.20 / 15 / 24
    # cost = sum(tokens x price) / 1e6; baseline = the same tokens at claude-opus-4-1.

    # a-01 08:00 orchestrator glm-4.5: 1000 in, 200 out, 5000 cache read
    #   cost     = 1000x0.60 + 200x2.20 + 5000x0.11 = 600 + 440 + 550           = 1590 / 1e6
    #   baseline = 1000x15 + 200x75 + 5000x1.50     = 15000 + 15000 + 7500      = 37500 / 1e6
    #   (before 12:00: the midday book gives the same)
    add(llm_call("a-01", _at(DAY_A, 8), "orchestrator", "zai", "glm-4.5", input_tokens=1000,
                 output_tokens=200, cache_read_tokens=5000, task_type="plan"),
        "0.00159", "0.0375", "0.00159", "0.0375")
    # a-02 09:30 architect claude-opus-4-1 escalated (three_plus_services), every token kind:
    #   2000 in, 1000 out, 10000 cache read, 3000 cache write 5m, 4000 cache write 1h
    #   cost = 2000x15 + 1000x75 + 10000x1.50 + 3000x18.75 + 4000x30
    #        = 30000 + 75000 + 15000 + 56250 + 120000 = 296250 / 1e6; baseline = cost
    add(llm_call("a-02", _at(DAY_A, 9, 30), "architect", "anthropic", "claude-opus-4-1",
                 task_id="t-a02", input_tokens=2000, output_tokens=1000, cache_read_tokens=10000,
                 cache_write_5m_tokens=3000, cache_write_1h_tokens=4000, escalated=True,
                 escalation_trigger="three_plus_services", task_type="design"),
        "0.29625", "0.29625", "0.29625", "0.29625")
    # a-03 11:59:59.999999 implementer glm-4.5 (last instant of the old price):
    #   3000 in, 500 out, 100 cache write 5m, 100 cache write 1h (free on GLM)
    #   cost     = 3000x0.60 + 500x2.20 + 100x0 + 100x0 = 1800 + 1100          = 2900 / 1e6
    #   baseline = 3000x15 + 500x75 + 100x18.75 + 100x30 = 45000 + 37500 + 1875 + 3000 = 87375 / 1e6
    add(llm_call("a-03", _at(DAY_A, 11, 59, 59, 999999), "implementer", "zai", "glm-4.5",
                 input_tokens=3000, output_tokens=500, cache_write_5m_tokens=100,
                 cache_write_1h_tokens=100, task_type="feature"),
        "0.0029", "0.087375", "0.0029", "0.087375")
    # a-04 12:00:00 exactly implementer glm-4.5 (first instant of the new price):
    #   3000 in, 500 out, 2000 cache read
    #   cost     = 3000x0.60 + 500x2.20 + 2000x0.11 = 1800 + 1100 + 220 = 3120 / 1e6
    #   baseline = 3000x15 + 500x75 + 2000x1.50    = 45000 + 37500 + 3000 = 85500 / 1e6
    #   midday:  cost = 3000x0.40 + 500x1.60 + 2000x0.08 = 1200 + 800 + 160 = 2160 / 1e6
    #            baseline = 3000x12 + 500x60 + 2000x1.20 = 36000 + 30000 + 2400 = 68400 / 1e6
    add(llm_call("a-04", _at(DAY_A, 12), "implementer", "zai", "glm-4.5", input_tokens=3000,
                 output_tokens=500, cache_read_tokens=2000, task_type="feature"),
        "0.00312", "0.0855", "0.00216", "0.0684")
    # a-05 14:00 critic glm-4.5-air: 10000 in, 300 out
    #   cost     = 10000x0.20 + 300x1.10 = 2000 + 330 = 2330 / 1e6 (same in both books)
    #   baseline = 10000x15 + 300x75 = 150000 + 22500 = 172500 / 1e6
    #   midday baseline = 10000x12 + 300x60 = 120000 + 18000 = 138000 / 1e6
    add(llm_call("a-05", _at(DAY_A, 14), "critic", "zai", "glm-4.5-air", input_tokens=10000,
                 output_tokens=300, task_type="code_review"),
        "0.00233", "0.1725", "0.00233", "0.138")
    # a-06 15:00 critic zai/glm-5-preview: no price in any book -> unpriced, NULL, never $0
    add(llm_call("a-06", _at(DAY_A, 15), "critic", "zai", "glm-5-preview", input_tokens=4000,
                 output_tokens=400, task_type="code_review"),
        None, None, None, None)
    # a-07 16:00 role "tester" (not in the policy) glm-4.5: 500 in, 100 out
    #   cost = 500x0.60 + 100x2.20 = 300 + 220 = 520 / 1e6; baseline = 500x15 + 100x75 = 15000 / 1e6
    #   midday: cost = 500x0.40 + 100x1.60 = 200 + 160 = 360; baseline = 500x12 + 100x60 = 12000
    add(llm_call("a-07", _at(DAY_A, 16), "tester", "zai", "glm-4.5", input_tokens=500,
                 output_tokens=100),
        "0.00052", "0.015", "0.00036", "0.012")
    # a-09 18:00 architect claude-opus-4-1 escalated by an unknown trigger: 100 in, 100 out
    #   cost = baseline = 100x15 + 100x75 = 9000 / 1e6; midday: 100x12 + 100x60 = 7200 / 1e6
    add(llm_call("a-09", _at(DAY_A, 18), "architect", "anthropic", "claude-opus-4-1",
                 input_tokens=100, output_tokens=100, escalated=True,
                 escalation_trigger="gut_feeling"),
        "0.009", "0.009", "0.0072", "0.0072")
    # a-08 20:00 orchestrator glm-4.5, landed twice (producer retry): 100 in, 10 out
    #   cost = 100x0.60 + 10x2.20 = 60 + 22 = 82 / 1e6; baseline = 100x15 + 10x75 = 2250 / 1e6
    #   midday: cost = 100x0.40 + 10x1.60 = 40 + 16 = 56; baseline = 100x12 + 10x60 = 1800
    add(llm_call("a-08", _at(DAY_A, 20), "orchestrator", "zai", "glm-4.5", input_tokens=100,
                 output_tokens=10),
        "0.000082", "0.00225", "0.000056", "0.0018")
    # The reviewer says a-02's escalation was not needed: a false positive.
    events.append(task_feedback("fa-01", _at(DAY_A, 21), "t-a02", satisfaction=5,
                                escalation_needed=False, review_consistent=True))

    # --- 2025-06-02, the share day -------------------------------------------------------------
    # 19 implementer calls on glm-4.5, 1050 input tokens each (19950 in total), and one
    # integrator call escalated to claude-opus-4-1 with 34770 input tokens:
    #   glm cost      = 19950 x 0.60 / 1e6 = 0.01197      glm baseline = 19950 x 15 / 1e6 = 0.29925
    #   opus cost     = 34770 x 15 / 1e6   = 0.52155      (its baseline = its cost)
    #   savings       = 0.29925 - 0.01197 = 0.28728;  baseline = 0.29925 + 0.52155 = 0.8208
    #   cost_reduction_pct = 0.28728 / 0.8208 = 0.35 exactly  (target >= 0.35: met)
    #   default_model_share = 19 / 20 = 0.95 exactly        (target >= 0.95: met)
    # midday book (new prices all day): glm 1050x0.40 = 420 -> 0.00042; baseline 1050x12 = 12600
    #   -> 0.0126; opus 34770x12 = 417240 -> 0.41724
    for n in range(1, 20):
        add(llm_call(f"b-{n:02d}", _at(DAY_B, 9, n), "implementer", "zai", "glm-4.5",
                     input_tokens=1050, task_type="bugfix"),
            "0.00063", "0.01575", "0.00042", "0.0126")
    add(llm_call("b-20", _at(DAY_B, 10), "integrator", "anthropic", "claude-opus-4-1",
                 input_tokens=34770, escalated=True, escalation_trigger="multi_service_conflict"),
        "0.52155", "0.52155", "0.41724", "0.41724")

    # --- 2025-06-03, the review day ------------------------------------------------------------
    # 20 architect tasks, one escalated claude-opus-4-1 call each (100 input tokens:
    # cost = baseline = 100 x 15 / 1e6 = 0.0015; midday 100 x 12 / 1e6 = 0.0012), and one
    # feedback event per task at 20:00:
    #   satisfaction 5 for c-01..c-10, 3 for c-11..c-20: (10x5 + 10x3) / 20 = 4.0 (>= 4.0: met)
    #   review_consistent false only for c-20: 19 / 20 = 0.95 (>= 0.95: met)
    #   escalation_needed false only for c-20: 1 / 20 = 0.05 (< 0.05 required: missed)
    # c-01 also has an earlier (10:00) feedback saying false, superseded by the 20:00 true; it
    # has no satisfaction and no review, so it changes none of the averages. fc-05 lands twice.
    for n in range(1, 21):
        task = f"t-c{n:02d}"
        add(llm_call(f"c-{n:02d}", _at(DAY_C, 9, n), "architect", "anthropic", "claude-opus-4-1",
                     task_id=task, input_tokens=100, escalated=True,
                     escalation_trigger="three_plus_services"),
            "0.0015", "0.0015", "0.0012", "0.0012")
        events.append(task_feedback(f"fc-{n:02d}", _at(DAY_C, 20, n), task,
                                    satisfaction=5 if n <= 10 else 3,
                                    escalation_needed=n != 20, review_consistent=n != 20))
    events.append(task_feedback("fc-00", _at(DAY_C, 10), "t-c01", escalation_needed=False))

    duplicates = ("a-08", "fc-05")
    rejected = [(_at(DAY_A, 10), b'{"event_id": "broken', "invalid JSON: EOF while parsing a string")]
    landed = write_events_lake(Path(lake_dir), events, duplicates=duplicates, rejected=rejected)

    calls = {e["event_id"]: (e["occurred_at"].date(), e["role"], e["provider"], e["model"],
                             e["escalated"], e["escalation_trigger"])
             for e in events if e["event_type"] == "llm_call"}

    # KPIs with schemas/prices.csv and the repo policy's targets.
    # Day A's 8 priced calls (a-06 is unpriced):
    #   baseline = 0.0375 + 0.29625 + 0.087375 + 0.0855 + 0.1725 + 0.015 + 0.009 + 0.00225 = 0.705375
    #   cost     = 0.00159 + 0.29625 + 0.0029 + 0.00312 + 0.00233 + 0.00052 + 0.009 + 0.000082 = 0.315792
    #   savings  = 0.705375 - 0.315792 = 0.389583; cost_reduction = 0.389583 / 0.705375
    #            = 0.552306...  (above the 0.45 maximum: missed)
    assert sum(v for k, v in baseline.items() if k.startswith("a-") and v) == D("0.705375")
    assert sum(v for k, v in cost.items() if k.startswith("a-") and v) == D("0.315792")
    kpi = {
        # default model calls a-01, a-03, a-04, a-07, a-08 = 5 of 9; escalated tasks t-a02
        # (verdict: not needed) and t-a09 (no verdict) -> 1 / 1; one feedback: satisfaction 5,
        # review consistent; one unpriced call.
        (DAY_A, "cost_reduction_pct"): (_ratio(D("0.389583"), D("0.705375")), "missed"),
        (DAY_A, "default_model_share"): (_ratio(D(5), D(9)), "missed"),
        (DAY_A, "escalation_false_positive_rate"): (D(1), "missed"),
        (DAY_A, "satisfaction_avg"): (D(5), "met"),
        (DAY_A, "review_consistency"): (D(1), "met"),
        (DAY_A, "unpriced_calls"): (D(1), "missed"),
        (DAY_B, "cost_reduction_pct"): (D("0.35"), "met"),
        (DAY_B, "default_model_share"): (D("0.95"), "met"),
        (DAY_B, "escalation_false_positive_rate"): (None, "no_data"),
        (DAY_B, "satisfaction_avg"): (None, "no_data"),
        (DAY_B, "review_consistency"): (None, "no_data"),
        (DAY_B, "unpriced_calls"): (D(0), "met"),
        (DAY_C, "cost_reduction_pct"): (D(0), "missed"),
        (DAY_C, "default_model_share"): (D(0), "missed"),
        (DAY_C, "escalation_false_positive_rate"): (D("0.05"), "missed"),
        (DAY_C, "satisfaction_avg"): (D("4.0"), "met"),
        (DAY_C, "review_consistency"): (D("0.95"), "met"),
        (DAY_C, "unpriced_calls"): (D(0), "met"),
    }

    return GoldenExpected(
        lake=Path(lake_dir), dates=(DAY_A, DAY_B, DAY_C), cost=cost, baseline=baseline,
        midday_cost=midday_cost, midday_baseline=midday_baseline, calls=calls,
        feedback_events=sum(1 for e in events if e["event_type"] == "task_feedback"),
        landed=landed, duplicate_event_ids=duplicates, rejected_events=len(rejected),
        kpi_daily=kpi)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator truncated to 12 decimals, as the warehouse's exact_ratio."""
    from decimal import ROUND_DOWN, localcontext

    with localcontext() as ctx:
        ctx.prec = 60
        return (numerator / denominator).quantize(D("1E-12"), rounding=ROUND_DOWN)


_BUILT: dict[Path, tuple[GoldenExpected, Any]] = {}


def golden_warehouse(tmp_path_factory: Any) -> tuple[GoldenExpected, Any]:
    """(expected, settings) of the golden lake built with the repo's price book and policy.

    Built once per test session (under pytest's session temp dir) and shared by the tests
    that only read it (test_warehouse, test_report, test_finance_queries): a test that
    changes the lake, the price book or the warehouse builds its own.
    """
    from pipeline.settings import Settings
    from pipeline.warehouse import build_warehouse

    key = Path(tmp_path_factory.getbasetemp())
    if key not in _BUILT:
        repo = Path(__file__).resolve().parents[1]
        root = tmp_path_factory.mktemp("golden-shared")
        expected = write_golden_lake(root / "lake")
        settings = Settings(lake=root / "lake", warehouse=root / "warehouse.duckdb",
                            policy=repo / "schemas" / "routing_policy.yaml",
                            prices=repo / "schemas" / "prices.csv")
        build_warehouse(settings)
        _BUILT[key] = (expected, settings)
    return _BUILT[key]
