"""Generate a large, realistic lake straight to Parquet (no Kafka), for the build benchmark.

    .venv/bin/python bench/gen_lake.py --lake /tmp/lake --events 10000000 --days 30
    .venv/bin/python bench/gen_lake.py --lake /tmp/lake --events 333000 --days 1 --append

The traffic follows the routing policy's ``simulation:`` section (role shares, calls per
task, log-normal token counts, trigger rates, escalation factors, feedback shares), drawn
with numpy one whole day at a time, so memory stays bounded by one day of events. Files are
laid out exactly as the consumer writes them (pipeline/lake.py): per day, per Kafka
partition, chunks of at most ``--flush-events`` messages named after their offsets, the
llm_call and task_feedback files of one chunk sharing one name and covering its offsets
exactly once. ``--append`` continues every partition's offsets after the files already there
(one more day landing).

The same generator makes the JSON events the Kafka benchmarks pre-produce
(:func:`day_tables` + :func:`to_json_values`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.lake import (  # noqa: E402
    EVENT_TABLES,
    LLM_CALL_SCHEMA,
    TASK_FEEDBACK_SCHEMA,
    FileName,
    partition_dir,
    write_table_atomic,
)
from pipeline.policy import Policy  # noqa: E402
from pipeline.simulate import SimulationProfile, load_profile  # noqa: E402

__all__ = ["Traffic", "day_tables", "to_json_values", "generate_lake", "next_offsets"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = REPO_ROOT / "schemas" / "routing_policy.yaml"
TOPIC = "agent-usage"
PARTITIONS = 6
US_PER_DAY = 86_400_000_000
_SOURCE_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "ingested_at")


@dataclass(frozen=True)
class Traffic:
    """The policy's traffic profile as numpy-friendly arrays (one entry per role)."""

    policy: Policy
    profile: SimulationProfile
    roles: list[str]
    task_share: np.ndarray
    calls_mean: np.ndarray
    calls_max: np.ndarray
    input_median: np.ndarray
    input_sigma: np.ndarray
    output_median: np.ndarray
    output_sigma: np.ndarray
    cache_read_share: np.ndarray
    cache_ttl_1h: np.ndarray
    task_types: list[tuple[str, ...]]
    # per role: [(trigger id, rate), ...] in policy order
    triggers: list[list[tuple[str, float]]]

    @classmethod
    def from_policy(cls, path: Path = DEFAULT_POLICY) -> Traffic:
        policy, sim = load_profile(path)  # ConfigError without a simulation: section
        roles = list(sim.roles)
        r = [sim.roles[name] for name in roles]
        share = np.array([float(x.task_share) for x in r])
        return cls(
            policy=policy,
            profile=sim,
            roles=roles,
            task_share=share / share.sum(),
            calls_mean=np.array([x.calls_mean for x in r]),
            calls_max=np.array([x.calls_max for x in r]),
            input_median=np.array([x.input_median for x in r]),
            input_sigma=np.array([x.input_sigma for x in r]),
            output_median=np.array([x.output_median for x in r]),
            output_sigma=np.array([x.output_sigma for x in r]),
            cache_read_share=np.array([x.cache_read_share for x in r]),
            cache_ttl_1h=np.array([x.cache_write_ttl == "1h" for x in r]),
            task_types=[x.task_types for x in r],
            triggers=[
                [(t.id, sim.trigger_rates.get(t.id, 0.0)) for t in policy.roles[name].triggers]
                if name in policy.roles
                else []
                for name in roles
            ],
        )


def _strings(prefix: str, numbers: np.ndarray) -> pa.Array:
    """``prefix + str(n)`` for every n, vectorised in Arrow."""
    text = pc.cast(pa.array(numbers, pa.int64()), pa.string())
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


def _pick(choices: list[str], index: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(index, pa.int32()), pa.array(choices, pa.string())
    ).cast(pa.string())


def day_tables(
    traffic: Traffic,
    day: dt.date,
    events: int,
    rng: np.random.Generator,
    *,
    id_prefix: str,
    partitions: int = PARTITIONS,
) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray]:
    """One day of traffic: exactly ``events`` events.

    Returns (llm_call rows, task_feedback rows, Kafka partition of each llm_call row, of each
    task_feedback row). The rows have the lake schemas minus the source columns. Event ids
    are ``<id_prefix><n>`` (unique within a prefix).
    """
    sim = traffic.profile
    default, premium = traffic.policy.default_model, traffic.policy.premium_model
    # Enough tasks for the day: draw ~20% more than the mean needs, cut to ``events`` below.
    n_tasks = max(8, int(events / 3.0 * 1.2) + 8)
    role = rng.choice(len(traffic.roles), size=n_tasks, p=traffic.task_share)

    trigger_ids: list[str] = []
    trigger = np.full(n_tasks, -1, np.int32)
    for r, trig in enumerate(traffic.triggers):
        mine = role == r
        for tid, rate in reversed(trig):  # the first firing trigger in policy order wins
            if tid not in trigger_ids:
                trigger_ids.append(tid)
            fired = mine & (rng.random(n_tasks) < rate)
            trigger[fired] = trigger_ids.index(tid)
    escalated = trigger >= 0

    mean = traffic.calls_mean[role]
    calls = 1 + rng.poisson(np.maximum(mean - 1, 0))
    calls = np.minimum(calls, traffic.calls_max[role])
    calls = np.where(escalated, np.ceil(calls * sim.escalated_calls_factor), calls).astype(np.int64)
    fb_share = np.where(escalated, sim.feedback.escalated_task_share, sim.feedback.task_share)
    has_feedback = rng.random(n_tasks) < fb_share

    # Cut to exactly ``events`` events: whole tasks, then the last task's calls.
    per_task = calls + has_feedback
    total = np.cumsum(per_task)
    n_tasks = int(np.searchsorted(total, events) + 1)
    if n_tasks > len(total):
        raise RuntimeError("not enough tasks drawn for the day")  # cannot happen: 20% margin
    over = int(total[n_tasks - 1] - events)
    role, trigger, escalated = role[:n_tasks], trigger[:n_tasks], escalated[:n_tasks]
    calls, has_feedback = calls[:n_tasks].copy(), has_feedback[:n_tasks].copy()
    if over:
        if has_feedback[-1]:
            has_feedback[-1] = False
            over -= 1
        calls[-1] -= over
        if calls[-1] <= 0:  # the last task had only feedback left: give it one call instead
            calls[-1] = 1
            has_feedback[-1] = False

    task_no = np.arange(n_tasks, dtype=np.int64)
    day_start_us = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1_000_000)
    task_start = rng.integers(0, US_PER_DAY - 3_600_000_000, n_tasks)
    task_partition = rng.integers(0, partitions, n_tasks)
    agent = rng.integers(0, sim.agents_per_role, n_tasks)
    # task type: one of its role's types; indexes into the flattened list of every role's types
    type_names = [name for types in traffic.task_types for name in types]
    type_first = np.cumsum([0] + [len(types) for types in traffic.task_types])
    n_types = np.diff(type_first)
    task_type = type_first[role] + (rng.random(n_tasks) * n_types[role]).astype(np.int64)

    # --- llm_call rows -------------------------------------------------------------------
    t = np.repeat(task_no, calls)
    n = len(t)
    call_index = np.arange(n) - np.repeat(np.cumsum(calls) - calls, calls)
    r = role[t]
    esc = escalated[t]
    in_factor = np.where(esc, sim.escalated_input_factor, 1.0)
    out_factor = np.where(esc, sim.escalated_output_factor, 1.0)
    input_total = np.rint(
        rng.lognormal(np.log(traffic.input_median[r]), traffic.input_sigma[r]) * in_factor
    ).astype(np.int64)
    output = np.rint(
        rng.lognormal(np.log(traffic.output_median[r]), traffic.output_sigma[r]) * out_factor
    ).astype(np.int64)
    error = rng.random(n) < sim.error_rate
    output[error] = 0
    # later calls of a task re-read the cached prefix; the first call writes it
    cache_read = np.where(
        call_index > 0, np.rint(input_total * traffic.cache_read_share[r]), 0
    ).astype(np.int64)
    model_idx = esc.astype(np.int32)  # 0 default, 1 premium
    model_names = [default.model, premium.model]
    writes = np.array(
        [
            sim.models[default.model].cache_writes if default.model in sim.models else False,
            sim.models[premium.model].cache_writes if premium.model in sim.models else False,
        ]
    )
    cache_write = np.where(
        writes[model_idx] & (call_index == 0), np.rint(input_total * 0.3), 0
    ).astype(np.int64)
    ttl_1h = traffic.cache_ttl_1h[r]
    input_tokens = np.maximum(input_total - cache_read - cache_write, 0)
    lat = np.array(
        [
            [sim.models[m].first_token_ms, sim.models[m].ms_per_output_token]
            if m in sim.models
            else [800.0, 15.0]
            for m in model_names
        ]
    )
    latency = np.rint(
        (lat[model_idx, 0] + lat[model_idx, 1] * output) * rng.uniform(0.8, 1.25, n)
    ).astype(np.int64)
    think = rng.uniform(sim.think_time_min_s, sim.think_time_max_s, n) * 1_000_000
    offset_us = task_start[t] + np.rint(call_index * think).astype(np.int64)
    occurred = day_start_us + np.minimum(offset_us, US_PER_DAY - 1)
    trig_names = [*trigger_ids, "-"]
    trig = trigger[t]

    llm = pa.table(
        {
            "event_id": _strings(id_prefix, np.arange(n)),
            "event_type": _pick(["llm_call"], np.zeros(n, np.int32)),
            "schema_version": pa.array(np.ones(n, np.int32)),
            "occurred_at": pa.array(occurred, pa.timestamp("us", tz="UTC")),
            "agent_id": pc.binary_join_element_wise(
                _pick(traffic.roles, r), _strings("-", agent[t]), ""
            ),
            "task_id": _strings(f"{id_prefix}task-", t),
            "role": _pick(traffic.roles, r),
            "provider": _pick([default.provider, premium.provider], model_idx),
            "model": _pick(model_names, model_idx),
            "input_tokens": pa.array(input_tokens),
            "output_tokens": pa.array(output),
            "cache_read_tokens": pa.array(cache_read),
            "cache_write_5m_tokens": pa.array(np.where(ttl_1h, 0, cache_write)),
            "cache_write_1h_tokens": pa.array(np.where(ttl_1h, cache_write, 0)),
            "latency_ms": pa.array(latency),
            "status": _pick(["ok", "error"], error.astype(np.int32)),
            "escalated": pa.array(esc),
            "escalation_trigger": pa.array(
                np.where(trig >= 0, np.array(trig_names, object)[trig], None), pa.string()
            ),
            "policy_version": _pick([traffic.policy.version], np.zeros(n, np.int32)),
            "task_type": _pick(type_names, task_type[t]),
        }
    )

    # --- task_feedback rows --------------------------------------------------------------
    ft = task_no[has_feedback]
    m = len(ft)
    last_call = task_start[ft] + np.rint((calls[ft]) * sim.think_time_max_s * 1_000_000).astype(
        np.int64
    )
    f_occurred = day_start_us + np.minimum(last_call, US_PER_DAY - 1)
    stars = np.array([s for s, _ in sim.feedback.satisfaction])
    weights = np.array([w for _, w in sim.feedback.satisfaction])
    satisfaction = stars[rng.choice(len(stars), size=m, p=weights / weights.sum())]
    f_esc = escalated[ft]
    verdict_flip = rng.random(m) < np.where(
        f_esc, sim.feedback.false_positive_rate, sim.feedback.false_negative_rate
    )
    needed = np.where(verdict_flip, ~f_esc, f_esc)
    review_roles = np.isin(np.array(traffic.roles)[role[ft]], sim.feedback.review_roles)
    consistent = rng.random(m) < sim.feedback.review_consistency
    feedback = pa.table(
        {
            "event_id": _strings(f"{id_prefix}fb-", ft),
            "event_type": _pick(["task_feedback"], np.zeros(m, np.int32)),
            "schema_version": pa.array(np.ones(m, np.int32)),
            "occurred_at": pa.array(f_occurred, pa.timestamp("us", tz="UTC")),
            "agent_id": pc.binary_join_element_wise(
                _pick(traffic.roles, role[ft]), _strings("-", agent[ft]), ""
            ),
            "task_id": _strings(f"{id_prefix}task-", ft),
            "role": _pick(traffic.roles, role[ft]),
            "satisfaction": pa.array(satisfaction.astype(np.int32)),
            "escalation_needed": pa.array(needed),
            "review_consistent": pa.array(np.where(review_roles, consistent, None), pa.bool_()),
        }
    )
    return llm, feedback, task_partition[t], task_partition[ft]


def to_json_values(table: pa.Table) -> list[tuple[bytes, bytes]]:
    """(key = task_id, value = JSON) for every row: the messages an agent would send."""
    out = []
    dumps = orjson.dumps
    for row in table.to_pylist():
        row["occurred_at"] = row["occurred_at"].isoformat().replace("+00:00", "Z")
        out.append((row["task_id"].encode(), dumps(row)))
    return out


def next_offsets(lake: Path, topic: str = TOPIC, partitions: int = PARTITIONS) -> list[int]:
    """The next free offset of every partition, after the files already in the lake."""
    nxt = [0] * partitions
    for path in Path(lake).glob("*/*/*.parquet"):
        name = FileName.parse(path.name)
        if name and name.topic == topic and name.partition < partitions:
            nxt[name.partition] = max(nxt[name.partition], name.last_offset + 1)
    return nxt


def _with_source(
    table: pa.Table, schema: pa.Schema, partition: int, offsets: np.ndarray, ingested: np.ndarray
) -> pa.Table:
    n = table.num_rows
    table = table.append_column("kafka_topic", pa.array([TOPIC] * n, pa.string()))
    table = table.append_column("kafka_partition", pa.array(np.full(n, partition, np.int32)))
    table = table.append_column("kafka_offset", pa.array(offsets, pa.int64()))
    table = table.append_column("ingested_at", pa.array(ingested, pa.timestamp("us", tz="UTC")))
    return table.cast(schema)


def _write_day(
    lake: Path,
    day: dt.date,
    llm: pa.Table,
    fb: pa.Table,
    llm_part: np.ndarray,
    fb_part: np.ndarray,
    offsets: list[int],
    flush_events: int,
) -> int:
    """Lay one day out per partition and flush chunk, as the consumer would; returns files."""
    files = 0
    for p in range(len(offsets)):
        li = np.flatnonzero(llm_part == p)
        fi = np.flatnonzero(fb_part == p)
        # arrival order: by occurred_at across both tables
        times = np.concatenate(
            [
                llm.column("occurred_at").take(pa.array(li)).to_numpy().view("i8"),
                fb.column("occurred_at").take(pa.array(fi)).to_numpy().view("i8"),
            ]
        )
        kind = np.concatenate([np.zeros(len(li), np.int8), np.ones(len(fi), np.int8)])
        idx = np.concatenate([li, fi])
        order = np.argsort(times, kind="stable")
        times, kind, idx = times[order], kind[order], idx[order]
        for start in range(0, len(idx), flush_events):
            sl = slice(start, start + flush_events)
            first = offsets[p] + start
            count = len(idx[sl])
            offs = np.arange(first, first + count, dtype=np.int64)
            name = FileName(TOPIC, p, first, first + count - 1)
            ingested = times[sl] + 2_000_000  # landed a couple of seconds later
            for table_name, source, k, schema in (
                ("llm_call", llm, 0, LLM_CALL_SCHEMA),
                ("task_feedback", fb, 1, TASK_FEEDBACK_SCHEMA),
            ):
                sel = kind[sl] == k
                if not sel.any():
                    continue
                rows = source.take(pa.array(idx[sl][sel]))
                rows = _with_source(rows, schema, p, offs[sel], ingested[sel])
                write_table_atomic(rows, partition_dir(lake, table_name, day) / str(name))
                files += 1
        offsets[p] += len(idx)
    return files


def generate_lake(
    lake: Path,
    *,
    events: int,
    days: int,
    last_day: dt.date,
    seed: int = 7,
    append: bool = False,
    flush_events: int = 50_000,
    policy: Path = DEFAULT_POLICY,
    progress: bool = True,
) -> dict:
    """Write ``events`` events spread evenly over the ``days`` days ending ``last_day``."""
    lake = Path(lake)
    if not append and any(lake.glob(f"{EVENT_TABLES[0]}/*/*.parquet")):
        raise SystemExit(f"{lake} already holds a lake; pass --append to add to it")
    traffic = Traffic.from_policy(policy)
    offsets = next_offsets(lake) if append else [0] * PARTITIONS
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    per_day = [events // days + (1 if i < events % days else 0) for i in range(days)]
    llm_rows = fb_rows = files = 0
    for i, n in enumerate(per_day):
        day = last_day - dt.timedelta(days=days - 1 - i)
        llm, fb, lp, fp = day_tables(traffic, day, n, rng, id_prefix=f"s{seed}d{day:%Y%m%d}-")
        files += _write_day(lake, day, llm, fb, lp, fp, offsets, flush_events)
        llm_rows += llm.num_rows
        fb_rows += fb.num_rows
        if progress:
            print(
                f"gen_lake: {day} {n} events ({i + 1}/{days}, "
                f"{time.perf_counter() - started:.1f} s)",
                file=sys.stderr,
            )
    return {
        "events": llm_rows + fb_rows,
        "llm_call": llm_rows,
        "task_feedback": fb_rows,
        "files": files,
        "days": days,
        "first_day": str(last_day - dt.timedelta(days=days - 1)),
        "last_day": str(last_day),
        "seconds": round(time.perf_counter() - started, 2),
    }


def command(
    lake: Path,
    events: int,
    days: int,
    last_day: dt.date,
    *,
    flush_events: int | None = None,
    append: bool = False,
) -> list[str]:
    """The command line that runs this script (a subprocess, so that it can be timed)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--lake", str(lake)]
    argv += ["--events", str(events), "--days", str(days), "--last-day", str(last_day)]
    if flush_events is not None:
        argv += ["--flush-events", str(flush_events)]
    if append:
        argv += ["--append", "--seed", "8"]  # another seed: the new day's own events
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--last-day",
        type=dt.date.fromisoformat,
        default=dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1),
        help="last day of traffic (default yesterday UTC)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--append", action="store_true", help="add to an existing lake, continuing its offsets"
    )
    parser.add_argument("--flush-events", type=int, default=50_000)
    args = parser.parse_args(argv)
    summary = generate_lake(
        args.lake,
        events=args.events,
        days=args.days,
        last_day=args.last_day,
        seed=args.seed,
        append=args.append,
        flush_events=args.flush_events,
    )
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
