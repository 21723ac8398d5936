"""``modelmeter simulate``: agent traffic that follows the routing policy, produced to Kafka.

The traffic model is pure and deterministic (docs/policy.md, "The simulator")::

    run = SimRun(events=10_000, days=30, end_date=date(2026, 11, 25), seed=42)
    chunk = generate_chunk(policy, run, 0)      # tasks, valid events and messages of chunk 0
    chunk.messages                               # [(key, value), ...] ready for Kafka

Events are made in chunks of ``CHUNK_EVENTS`` valid events; chunk ``j`` depends only on the
policy, the run parameters and ``j`` (its own random generator), so the same seed gives the
same event_ids and values however many producer processes send the chunks. Each task draws
its role from the role mix, its signals so that each trigger's condition holds with the
configured rate, asks :func:`pipeline.policy.route` for the model, and makes a few calls
(heavy-tailed token counts per role, prompt-cache reads and writes, latencies by model, a
small error rate) and, for a share of tasks, a ``task_feedback`` event.

``--bad-fraction`` adds raw bad messages (a varied mix of contract breaks) and
``--duplicate-fraction`` re-sends valid events unchanged (producer retries, same event_id);
both counts are exact: ``floor(events x fraction)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import math
import multiprocessing as mp
import os
import queue
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipeline._exceptions import ConfigError, PipelineError
from pipeline.policy import Decision, Policy, Rule, Signal, SimulationProfile, load_policy, route

__all__ = [
    "CHUNK_EVENTS",
    "BAD_KINDS",
    "SimRun",
    "SimTask",
    "Chunk",
    "Summary",
    "generate_chunk",
    "iter_chunks",
    "summarize",
    "simulate",
    "run_cli",
]

CHUNK_EVENTS = 2000


@dataclass(frozen=True, slots=True)
class SimRun:
    """Parameters of one simulation run."""

    events: int
    days: int
    end_date: dt.date
    seed: int
    bad_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    not_after: dt.datetime | None = None  # no event later than this (the clock, for a run of today)

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ConfigError(f"--events must be >= 0, got {self.events}")
        if self.days < 1:
            raise ConfigError(f"--days must be >= 1, got {self.days}")
        earliest = dt.date(2020, 1, 1)  # the contract rejects occurred_at before 2020
        if (self.end_date - earliest).days + 1 < self.days:
            raise ConfigError(f"--days {self.days} ending {self.end_date} would start before "
                              f"{earliest}, the earliest occurred_at the contract accepts")
        for name, value in (("--bad-fraction", self.bad_fraction),
                            ("--duplicate-fraction", self.duplicate_fraction)):
            if not (0.0 <= value <= 1.0) or math.isnan(value):
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")

    @property
    def start_date(self) -> dt.date:
        return self.end_date - dt.timedelta(days=self.days - 1)

    @property
    def tag(self) -> str:
        """Short digest of (seed, days, end date): the prefix of every id of this run.

        Two runs with the same seed but other days never share an event_id (the warehouse
        would otherwise take the second run's events for retries of the first).
        """
        text = f"{self.seed}|{self.days}|{self.end_date.isoformat()}"
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        start = index * CHUNK_EVENTS
        return start, min(start + CHUNK_EVENTS, self.events)

    @property
    def chunks(self) -> int:
        return -(-self.events // CHUNK_EVENTS)


@dataclass(frozen=True, slots=True)
class SimTask:
    """One simulated task: what routing saw and decided."""

    task_id: str
    role: str
    signals: dict[str, int | bool]
    fired: tuple[str, ...]
    trigger: str | None
    calls: int
    has_feedback: bool


@dataclass(slots=True)
class Chunk:
    """The messages of one chunk and what they hold."""

    index: int
    tasks: list[SimTask]
    events: list[dict[str, Any]]            # the valid events, in the order sent
    messages: list[tuple[bytes, bytes | None]]
    duplicates: int
    bad_kinds: Counter[str]


@dataclass(slots=True)
class Summary:
    """Counts of a run, JSON-able with :meth:`as_dict` (``--summary-json``)."""

    valid_events: int = 0
    llm_call_events: int = 0
    task_feedback_events: int = 0
    duplicates: int = 0
    bad_messages: int = 0
    tasks: int = 0
    escalated_tasks: int = 0
    escalated_calls: int = 0
    error_calls: int = 0
    tokens: Counter[str] = field(default_factory=Counter)
    bad_kinds: Counter[str] = field(default_factory=Counter)
    escalations_by_trigger: Counter[str] = field(default_factory=Counter)
    calls_by_model: Counter[str] = field(default_factory=Counter)

    def add(self, chunk: Chunk) -> None:
        self.duplicates += chunk.duplicates
        self.bad_messages += sum(chunk.bad_kinds.values())
        self.bad_kinds.update(chunk.bad_kinds)
        self.tasks += len(chunk.tasks)
        for task in chunk.tasks:
            if task.trigger:
                self.escalated_tasks += 1
                self.escalations_by_trigger[task.trigger] += 1
        for ev in chunk.events:
            self.valid_events += 1
            if ev["event_type"] == "llm_call":
                self.llm_call_events += 1
                self.escalated_calls += ev["escalated"]
                self.error_calls += ev["status"] == "error"
                self.calls_by_model[ev["model"]] += 1
                for kind in _TOKEN_KINDS:
                    self.tokens[kind] += ev[f"{kind}_tokens"]
            else:
                self.task_feedback_events += 1

    def merge(self, other: Summary) -> None:
        for name in ("valid_events", "llm_call_events", "task_feedback_events", "duplicates",
                     "bad_messages", "tasks", "escalated_tasks", "escalated_calls", "error_calls"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("tokens", "bad_kinds", "escalations_by_trigger", "calls_by_model"):
            getattr(self, name).update(getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid_events": self.valid_events,
            # ids are unique by construction; duplicates re-send an id already counted here
            "distinct_event_ids": self.valid_events,
            "llm_call_events": self.llm_call_events,
            "task_feedback_events": self.task_feedback_events,
            "duplicates": self.duplicates,
            "bad_messages": self.bad_messages,
            "messages": self.valid_events + self.duplicates + self.bad_messages,
            "tasks": self.tasks,
            "escalated_tasks": self.escalated_tasks,
            "escalated_calls": self.escalated_calls,
            "error_calls": self.error_calls,
            "tokens": {kind: self.tokens[kind] for kind in _TOKEN_KINDS},
            "calls_by_model": dict(sorted(self.calls_by_model.items())),
            "escalations_by_trigger": dict(sorted(self.escalations_by_trigger.items())),
            "bad_kinds": dict(sorted(self.bad_kinds.items())),
        }


_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")


# ---------------------------------------------------------------------------------------------
# Signal drawing: values that make a trigger's rule hold, or not hold
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Draw:
    trigger: str
    signal: str
    rate: float
    fire: tuple[Sequence[int | bool], Sequence[float]]
    quiet: tuple[Sequence[int | bool], Sequence[float]]


def _values(sig: Signal, rule: Rule, holds: bool, trigger: str) -> tuple[list[int | bool], list[float]]:
    """Candidate values of ``sig`` for which ``rule`` holds (or not), likelier near the threshold."""
    if sig.type == "bool":
        vals: list[int | bool] = [v for v in (False, True) if rule.matches(v) == holds]
        weights = [1.0] * len(vals)
    else:
        anchor = int(rule.value)
        lo = anchor - 6 if sig.min is None else max(sig.min, anchor - 6)
        hi = anchor + 8 if sig.max is None else min(sig.max, anchor + 8)
        vals = [v for v in range(lo, hi + 1) if rule.matches(v) == holds]
        # geometric fall-off away from the threshold: most tasks sit close to it
        weights = [0.55 ** abs(v - anchor) for v in vals]
    if not vals:
        raise ConfigError(f"signal {sig.name}: no value makes trigger {trigger} "
                          f"{'fire' if holds else 'stay quiet'} ({rule})")
    total = sum(weights)
    cum, acc = [], 0.0
    for w in weights:
        acc += w / total
        cum.append(acc)
    return vals, cum


@dataclass(frozen=True, slots=True)
class _Profile:
    """The policy's simulation section, precomputed for fast drawing."""

    roles: list[str]
    role_cum: list[float]
    draws: dict[str, list[_Draw]]
    sim: SimulationProfile
    sat_values: list[int]
    sat_cum: list[float]


def _profile(policy: Policy) -> _Profile:
    sim = policy.simulation
    if sim is None:
        raise ConfigError(f"{policy.path or 'the policy'} has no simulation: section "
                          "(docs/policy.md describes it)")
    roles = [r for r, spec in sim.roles.items() if spec.task_share > 0]
    total = sum(float(sim.roles[r].task_share) for r in roles)
    cum, acc = [], 0.0
    for r in roles:
        acc += float(sim.roles[r].task_share) / total
        cum.append(acc)
    draws: dict[str, list[_Draw]] = {}
    for r in roles:
        draws[r] = []
        for t in policy.roles[r].triggers:
            rate = sim.trigger_rates.get(t.id, 0.0)
            sig = policy.signals[t.rule.signal]
            fire = _values(sig, t.rule, True, t.id) if rate > 0 else ((), ())
            quiet = _values(sig, t.rule, False, t.id) if rate < 1 else ((), ())
            draws[r].append(_Draw(t.id, sig.name, rate, fire, quiet))
    sat = sim.feedback.satisfaction
    sat_total = sum(w for _, w in sat)
    sat_cum, acc = [], 0.0
    for _, w in sat:
        acc += w / sat_total
        sat_cum.append(acc)
    return _Profile(roles, cum, draws, sim, [s for s, _ in sat], sat_cum)


def _pick(rng: random.Random, values: Sequence[Any], cum: Sequence[float]) -> Any:
    u = rng.random()
    for value, c in zip(values, cum, strict=True):
        if u < c:
            return value
    return values[-1]


def _count(rng: random.Random, mean: float, cap: int) -> int:
    """1 + geometric number of further calls, mean ``mean``, at most ``cap``."""
    if mean <= 1:
        return 1
    p = 1.0 / mean
    extra = int(math.log(1.0 - rng.random()) / math.log(1.0 - p))
    return min(1 + extra, cap)


# ---------------------------------------------------------------------------------------------
# Bad messages: each kind breaks the contract in one way (an unknown model is NOT bad)
# ---------------------------------------------------------------------------------------------


def _mutate(**changes: Any) -> Callable[[dict[str, Any], random.Random], bytes]:
    def make(ev: dict[str, Any], rng: random.Random) -> bytes:
        out = dict(ev)
        for k, v in changes.items():
            if v is _DROP:
                out.pop(k, None)
            else:
                out[k] = v
        return orjson.dumps(out)
    return make


_DROP = object()

BAD_KINDS: dict[str, Callable[[dict[str, Any], random.Random], bytes | None]] = {
    "not_json": lambda ev, rng: b"agent-usage: " + orjson.dumps(ev)[:40],
    "truncated_json": lambda ev, rng: orjson.dumps(ev)[: rng.randrange(10, 60)],
    "not_utf8": lambda ev, rng: b'{"event_id": "\xff\xfe", "event_type": "llm_call"}',
    "not_an_object": lambda ev, rng: orjson.dumps([ev["event_id"], ev["task_id"]]),
    "empty_value": lambda ev, rng: b"",
    "missing_event_id": _mutate(event_id=_DROP),
    "missing_model": _mutate(model=_DROP),
    "missing_occurred_at": _mutate(occurred_at=_DROP),
    "tokens_as_string": lambda ev, rng: _mutate(input_tokens=str(ev["input_tokens"]))(ev, rng),
    "tokens_as_float": lambda ev, rng: _mutate(output_tokens=ev["output_tokens"] + 0.5)(ev, rng),
    "tokens_as_bool": _mutate(cache_read_tokens=True),
    "negative_tokens": _mutate(output_tokens=-17),
    "too_many_tokens": _mutate(input_tokens=100_000_001),
    "unknown_field": lambda ev, rng: _mutate(inptu_tokens=ev["input_tokens"])(ev, rng),
    "unknown_event_type": _mutate(event_type="llm_response"),
    "wrong_schema_version": _mutate(schema_version=2),
    "timestamp_without_offset": lambda ev, rng: _mutate(
        occurred_at=ev["occurred_at"].replace("+00:00", ""))(ev, rng),
    "timestamp_not_a_date": _mutate(occurred_at="yesterday afternoon"),
    "escalated_without_trigger": _mutate(escalated=True, escalation_trigger=None),
    "trigger_without_escalation": _mutate(escalated=False, escalation_trigger="three_plus_services"),
    "bad_event_id_characters": lambda ev, rng: _mutate(event_id=ev["event_id"] + "/retry#1")(ev, rng),
    "status_unknown": _mutate(status="timeout"),
}


def _bad(ev: dict[str, Any], rng: random.Random, bad_id: str) -> tuple[str, bytes | None]:
    kind = rng.choice(list(BAD_KINDS))
    template = dict(ev)
    if "event_id" in template:
        template["event_id"] = bad_id  # never collides with a valid event's id
    return kind, BAD_KINDS[kind](template, rng)


# ---------------------------------------------------------------------------------------------
# The traffic model
# ---------------------------------------------------------------------------------------------


def _window(run: SimRun) -> tuple[float, float]:
    start = dt.datetime.combine(run.start_date, dt.time(), dt.UTC).timestamp()
    end = dt.datetime.combine(run.end_date + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
    if run.not_after is not None:
        end = min(end, run.not_after.timestamp())
    if end <= start:
        raise ConfigError(f"the traffic window {run.start_date}..{run.end_date} is in the future")
    return start, end


_DAY_MS = 86_400_000
_day_prefix: dict[int, str] = {}


def _iso(ts: float) -> str:
    """RFC 3339 UTC timestamp with milliseconds (``2026-11-25T09:35:26.318+00:00``), fast."""
    ms = int(ts * 1000)
    day, rest = divmod(ms, _DAY_MS)
    prefix = _day_prefix.get(day)
    if prefix is None:
        prefix = _day_prefix[day] = (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat() + "T"
    sec, milli = divmod(rest, 1000)
    minute, sec = divmod(sec, 60)
    hour, minute = divmod(minute, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}+00:00"


def generate_chunk(policy: Policy, run: SimRun, index: int, *, profile: _Profile | None = None) -> Chunk:
    """Chunk ``index`` of ``run``: its tasks, valid events and Kafka messages (pure)."""
    prof = profile or _profile(policy)
    sim = prof.sim
    first, stop = run.chunk_bounds(index)
    budget = stop - first
    rng = random.Random(f"modelmeter-sim|{run.tag}|{index}")
    win_start, win_end = _window(run)
    span = win_end - win_start
    tag = run.tag
    version = policy.version
    models = sim.models
    fb = sim.feedback
    events: list[dict[str, Any]] = []
    tasks: list[SimTask] = []
    keys: list[bytes] = []
    rand, exp = rng.random, math.exp
    # normals in bulk from numpy (a Python-level gauss() per draw is a tenth of an event's cost)
    seed = int.from_bytes(hashlib.blake2b(f"{run.tag}|{index}".encode(), digest_size=8).digest())
    gauss = iter(np.random.default_rng(seed).standard_normal(3 * budget + 3).tolist()).__next__
    think_lo, think_hi = sim.think_time_min_s, sim.think_time_max_s
    decisions: dict[tuple[Any, ...], Decision] = {}  # route() is pure: memoise it per chunk
    k = 0
    while len(events) < budget:
        role = _pick(rng, prof.roles, prof.role_cum)
        shape = sim.roles[role]
        signals: dict[str, int | bool] = {}
        for d in prof.draws[role]:
            if rng.random() < d.rate:
                signals[d.signal] = _pick(rng, *d.fire)
            else:
                signals[d.signal] = _pick(rng, *d.quiet)
        memo = (role, *signals.values())
        decision = decisions.get(memo)
        if decision is None:
            decision = decisions[memo] = route(policy, role, signals)
        task_id = f"task-{tag}-{index:06d}-{k:04d}"
        agent_id = f"{role}-{int(rand() * sim.agents_per_role):02d}"
        task_type = shape.task_types[int(rand() * len(shape.task_types))]
        esc = decision.escalated
        if esc:
            calls = _count(rng, shape.calls_mean * sim.escalated_calls_factor,
                           max(1, round(shape.calls_max * sim.escalated_calls_factor)))
            in_med = shape.input_median * sim.escalated_input_factor
            out_med = shape.output_median * sim.escalated_output_factor
            cached = (shape.cache_read_share if sim.escalated_cache_read_share is None
                      else sim.escalated_cache_read_share)
        else:
            calls = _count(rng, shape.calls_mean, shape.calls_max)
            in_med, out_med = shape.input_median, shape.output_median
            cached = shape.cache_read_share
        calls = min(calls, budget - len(events))
        mu_in, mu_out = math.log(in_med), math.log(out_med)
        model = models[decision.model]
        t = win_start + rand() * span
        ttl_key = "cache_write_1h_tokens" if shape.cache_write_ttl == "1h" else "cache_write_5m_tokens"
        key = task_id.encode()
        for i in range(calls):
            prompt = min(int(exp(mu_in + shape.input_sigma * gauss())) + 1, model.context_tokens)
            cache_read = cache_write = 0
            if i == 0:
                if model.cache_writes:
                    cache_write = int(prompt * cached)
            else:
                cache_read = int(prompt * cached)
            failed = rand() < sim.error_rate
            output = 0 if failed else min(int(exp(mu_out + shape.output_sigma * gauss())),
                                           model.max_output_tokens)
            latency = (model.first_token_ms * exp(0.35 * gauss())
                       + output * model.ms_per_output_token * (0.8 + 0.45 * rand()))
            if t >= win_end:
                t = win_end - 0.001
            ev = {
                "event_id": f"sim-{tag}-{first + len(events):010d}",
                "event_type": "llm_call",
                "schema_version": 1,
                "occurred_at": _iso(t),
                "agent_id": agent_id,
                "task_id": task_id,
                "role": role,
                "provider": decision.provider,
                "model": decision.model,
                "input_tokens": prompt - cache_read - cache_write,
                "output_tokens": output,
                "cache_read_tokens": cache_read,
                "cache_write_5m_tokens": 0,
                "cache_write_1h_tokens": 0,
                "latency_ms": int(latency),
                "status": "error" if failed else "ok",
                "escalated": esc,
                "escalation_trigger": decision.trigger,
                "policy_version": version,
                "task_type": task_type,
            }
            ev[ttl_key] = cache_write
            events.append(ev)
            keys.append(key)
            t += latency / 1000.0 + think_lo + (think_hi - think_lo) * rand()
        has_feedback = len(events) < budget and rng.random() < (
            fb.escalated_task_share if esc else fb.task_share)
        if has_feedback:
            needed: bool | None
            if esc:
                needed = rng.random() >= fb.false_positive_rate
            else:
                needed = rng.random() < fb.false_negative_rate
            consistent = (rng.random() < fb.review_consistency) if role in fb.review_roles else None
            events.append({
                "event_id": f"sim-{tag}-{first + len(events):010d}",
                "event_type": "task_feedback",
                "schema_version": 1,
                "occurred_at": _iso(min(t + 60 + 3540 * rand(), win_end - 0.001)),
                "agent_id": agent_id,
                "task_id": task_id,
                "role": role,
                "satisfaction": _pick(rng, prof.sat_values, prof.sat_cum),
                "escalation_needed": needed,
                "review_consistent": consistent,
            })
            keys.append(key)
        tasks.append(SimTask(task_id, role, signals, decision.fired, decision.trigger, calls,
                             has_feedback))
        k += 1

    messages: list[tuple[bytes, bytes | None]] = [
        (key, orjson.dumps(ev)) for key, ev in zip(keys, events, strict=True)]
    extra: dict[int, list[tuple[bytes, bytes | None]]] = {}
    n_dup = math.floor(stop * run.duplicate_fraction) - math.floor(first * run.duplicate_fraction)
    for i in sorted(rng.sample(range(len(messages)), min(n_dup, len(messages)))):
        # a retry follows its original (same key, so same partition, later offset)
        extra.setdefault(rng.randrange(i + 1, len(messages) + 1), []).append(messages[i])
    n_bad = math.floor(stop * run.bad_fraction) - math.floor(first * run.bad_fraction)
    bad_kinds: Counter[str] = Counter()
    for b in range(n_bad):
        template = rng.choice(events) if events else {}
        if template.get("event_type") != "llm_call":
            template = next((e for e in events if e["event_type"] == "llm_call"), template)
        kind, value = _bad(template, rng, f"bad-{tag}-{index:06d}-{b:06d}")
        bad_kinds[kind] += 1
        key = template.get("task_id", f"bad-{tag}").encode()
        extra.setdefault(rng.randrange(len(messages) + 1), []).append((key, value))
    if extra:
        merged: list[tuple[bytes, bytes | None]] = []
        for pos in range(len(messages) + 1):
            merged.extend(extra.get(pos, ()))
            if pos < len(messages):
                merged.append(messages[pos])
        messages = merged
    return Chunk(index, tasks, events, messages, n_dup, bad_kinds)


def iter_chunks(policy: Policy, run: SimRun, indexes: Sequence[int] | None = None) -> Iterator[Chunk]:
    """The chunks of ``run`` (all, or those in ``indexes``), in order."""
    prof = _profile(policy)
    for index in range(run.chunks) if indexes is None else indexes:
        yield generate_chunk(policy, run, index, profile=prof)


def summarize(chunks: Iterator[Chunk] | Sequence[Chunk]) -> Summary:
    summary = Summary()
    for chunk in chunks:
        summary.add(chunk)
    return summary


# ---------------------------------------------------------------------------------------------
# Producing to Kafka
# ---------------------------------------------------------------------------------------------

# Larger batches than the SDK's agent-side defaults: the simulator sends bursts, not a trickle.
_PRODUCER_OPTIONS: dict[str, Any] = {"linger_ms": 20, "batch_size": 1024 * 1024,
                                     "client_id": "modelmeter-simulate"}
_MIN_EVENTS_PER_WORKER = 40_000


def _produce(policy: Policy, run: SimRun, settings: Any, indexes: Sequence[int],
             report: Callable[[Summary, int], None]) -> None:
    """Send the chunks ``indexes`` through the SDK; ``report(chunk summary, messages)`` per chunk."""
    from pipeline.sdk import UsageProducer

    prof = _profile(policy)
    # The SDK's default partitioner: murmur2 of the key (task_id), as the Java client and
    # librdkafka's murmur2_random, so a task's events share a partition whatever the transport.
    with UsageProducer(settings, create_topics=False, max_buffer=200_000,
                       **_PRODUCER_OPTIONS) as meter:
        # Valid events are pre-serialised (their contract validity is a unit test of this
        # module): validating each one again here would halve the throughput.
        for index in indexes:
            chunk = generate_chunk(policy, run, index, profile=prof)
            meter.send_raw_many(chunk.messages)
            part = Summary()
            part.add(chunk)
            report(part, len(chunk.messages))


def _worker(policy: Policy, run: SimRun, settings: Any, indexes: list[int], out: Any) -> None:
    try:
        _produce(policy, run, settings, indexes, lambda part, n: out.put(("chunk", part, n)))
        out.put(("done", None, 0))
    except PipelineError as exc:
        out.put(("error", f"{exc}", exc.exit_code))
    except BaseException as exc:  # reported by the parent as one line
        out.put(("error", f"{type(exc).__name__}: {exc}", 1))


def _workers(run: SimRun, workers: int | None) -> int:
    """Producer processes for ``run``: as asked, or one per 40k events up to the CPU count."""
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, run.events // _MIN_EVENTS_PER_WORKER, 4))
    elif workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    return max(1, min(workers, run.chunks or 1))


def simulate(policy: Policy, run: SimRun, settings: Any, *, workers: int | None = None,
             progress: Callable[[int], None] | None = None) -> Summary:
    """Produce ``run``'s traffic to ``settings.topic``; returns what was sent.

    ``workers`` producer processes share the chunks (default: one per 40k events, at most
    the CPU count); the messages are the same whatever the number. ``progress(messages)`` is
    called as each chunk is handed to the producer; the return waits for the broker's acks.
    """
    from pipeline.kafka_admin import ensure_topics

    _profile(policy)  # a policy without a simulation section fails before touching Kafka
    _window(run)
    workers = _workers(run, workers)
    ensure_topics(settings)
    total = Summary()

    def add(part: Summary, n: int) -> None:
        total.merge(part)
        if progress:
            progress(n)

    if workers == 1:
        _produce(policy, run, settings, range(run.chunks), add)
        return total
    ctx = mp.get_context("spawn")  # no fork of a process that may hold client threads
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, name=f"simulate-{w}", daemon=True,
                         args=(policy, run, settings, list(range(w, run.chunks, workers)), out))
             for w in range(workers)]
    for p in procs:
        p.start()
    running, failure = workers, None
    try:
        while running:
            try:
                kind, payload, n = out.get(timeout=1.0)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs) and out.empty():
                    dead = next(p for p in procs if p.exitcode not in (None, 0))
                    raise PipelineError(f"producer process {dead.name} died "
                                        f"(exit code {dead.exitcode})") from None
                continue
            if kind == "chunk":
                add(payload, n)
            elif kind == "done":
                running -= 1
            else:
                failure = (payload, n)
                break
    finally:
        if failure is not None:
            for p in procs:
                p.terminate()
        for p in procs:
            p.join(timeout=30)
    if failure is not None:
        error = PipelineError(failure[0])
        error.exit_code = failure[1]
        raise error
    return total


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _end_date(text: str | None, today: dt.date) -> dt.date:
    if not text:
        return today - dt.timedelta(days=1)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--start-date: expected YYYY-MM-DD, got {text!r}") from None
    if day > today:
        raise ConfigError(f"--start-date {day} is in the future (today is {today} UTC)")
    return day


def run_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter simulate``: produce, show progress on stderr, print the counts."""
    now = dt.datetime.now(dt.UTC)
    run = SimRun(events=args.events, days=args.days, end_date=_end_date(args.start_date, now.date()),
                 seed=args.seed, bad_fraction=args.bad_fraction,
                 duplicate_fraction=args.duplicate_fraction, not_after=now)
    if run.end_date < now.date():
        run = dataclasses.replace(run, not_after=None)
    policy = load_policy(settings.policy)
    _profile(policy)
    _workers(run, args.workers)  # bad options fail before the progress bar starts
    expected = (run.events + math.floor(run.events * run.bad_fraction)
                + math.floor(run.events * run.duplicate_fraction))
    started = time.perf_counter()
    from rich.console import Console

    console = Console(stderr=True)
    if args.no_progress or not console.is_terminal:  # a bar in a log file is noise
        summary = simulate(policy, run, settings, workers=args.workers)
    else:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("simulate"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("messages", total=expected)
            summary = simulate(policy, run, settings, workers=args.workers,
                               progress=lambda n: bar.advance(task, n))
    elapsed = time.perf_counter() - started
    data = summary.as_dict()
    rate = data["messages"] / elapsed if elapsed > 0 else 0.0
    data |= {"topic": settings.topic, "seed": run.seed, "days": run.days,
             "first_date": run.start_date.isoformat(), "last_date": run.end_date.isoformat(),
             "policy_version": policy.version, "elapsed_seconds": round(elapsed, 3),
             "messages_per_second": round(rate)}
    if args.summary_json:
        path = Path(args.summary_json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--summary-json {path}: {exc.strerror or exc}") from None
    print(f"simulated {data['valid_events']} valid events ({data['llm_call_events']} llm_call, "
          f"{data['task_feedback_events']} task_feedback, {data['distinct_event_ids']} distinct "
          f"event_ids), {data['bad_messages']} bad, {data['duplicates']} duplicates -> "
          f"{settings.topic} in {elapsed:.1f} s ({rate:,.0f} messages/s)")
    return 0
