"""The traffic model of ``modelmeter simulate``: pure and deterministic (docs/policy.md).

    traffic = load_traffic("schemas/routing_policy.yaml")
    run = SimRun(events=10_000, days=30, end_date=date(2026, 11, 25), seed=42)
    chunk = generate_chunk(traffic, run, 0)    # tasks, valid events and messages of chunk 0
    chunk.messages                             # [(key, value), ...] ready for Kafka

Events are made in chunks of ``CHUNK_EVENTS`` valid events; chunk ``j`` depends only on the
policy, the run parameters and ``j`` (its own random generator), so the same seed gives the
same event_ids and values however many producer processes send the chunks. Each task draws
its role from the role mix, its signals so that each trigger's condition holds with the
configured rate, asks :func:`pipeline.policy.route` for the model, and makes a few calls
(heavy-tailed token counts per role, prompt-cache reads and writes, latencies by model, a
small error rate) and, for a share of tasks, a ``task_feedback`` event.

``SimRun.bad_fraction`` adds raw bad messages (:mod:`pipeline.simulate.bad_messages`) and
``SimRun.duplicate_fraction`` re-sends valid events unchanged (producer retries, same
event_id); both counts are exact: ``floor(events x fraction)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipeline._exceptions import ConfigError
from pipeline.policy import Decision, Policy, Rule, Signal, route
from pipeline.policy.canary import assign_version, candidate_policy
from pipeline.simulate.bad_messages import bad_message
from pipeline.simulate.profile import SimulationProfile, load_profile

__all__ = [
    "CHUNK_EVENTS",
    "Chunk",
    "SimRun",
    "SimTask",
    "Traffic",
    "generate_chunk",
    "iter_chunks",
    "load_traffic",
    "window",
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
            raise ConfigError(
                f"--days {self.days} ending {self.end_date} would start before "
                f"{earliest}, the earliest occurred_at the contract accepts"
            )
        for name, value in (
            ("--bad-fraction", self.bad_fraction),
            ("--duplicate-fraction", self.duplicate_fraction),
        ):
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
    policy_version: str = ""  # the version that routed it (a canary's candidate, or the policy's)


@dataclass(slots=True)
class Chunk:
    """The messages of one chunk and what they hold."""

    index: int
    tasks: list[SimTask]
    events: list[dict[str, Any]]  # the valid events, in the order sent
    messages: list[tuple[bytes, bytes | None]]
    duplicates: int
    bad_kinds: Counter[str]


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


def _values(
    sig: Signal, rule: Rule, holds: bool, trigger: str
) -> tuple[list[int | bool], list[float]]:
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
        raise ConfigError(
            f"signal {sig.name}: no value makes trigger {trigger} "
            f"{'fire' if holds else 'stay quiet'} ({rule})"
        )
    total = sum(weights)
    cum, acc = [], 0.0
    for w in weights:
        acc += w / total
        cum.append(acc)
    return vals, cum


@dataclass(frozen=True, slots=True)
class Traffic:
    """A policy and its traffic profile, precomputed for fast drawing (pure, picklable)."""

    policy: Policy
    profile: SimulationProfile
    roles: list[str]
    role_cum: list[float]
    draws: dict[str, list[_Draw]]
    sat_values: list[int]
    sat_cum: list[float]
    #: the policy a canary's candidate routes with (pipeline.policy.canary); None = no canary
    candidate: Policy | None = None

    @classmethod
    def build(cls, policy: Policy, profile: SimulationProfile) -> Traffic:
        """ConfigError when a trigger's rule cannot fire (or stay quiet) at its rate."""
        sim = profile
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
        candidate = candidate_policy(policy) if policy.canary is not None else None
        sat_values = [s for s, _ in sat]
        return cls(policy, profile, roles, cum, draws, sat_values, sat_cum, candidate)


def load_traffic(path: str | Path) -> Traffic:
    """The traffic of the policy file at ``path`` (PolicyError / ConfigError when unusable)."""
    return Traffic.build(*load_profile(path))


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
# Chunks
# ---------------------------------------------------------------------------------------------


def window(run: SimRun) -> tuple[float, float]:
    """The run's time span as UTC epoch seconds; ConfigError when it lies wholly in the future."""
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


def generate_chunk(traffic: Traffic, run: SimRun, index: int) -> Chunk:
    """Chunk ``index`` of ``run``: its tasks, valid events and Kafka messages (pure)."""
    policy, sim = traffic.policy, traffic.profile
    first, stop = run.chunk_bounds(index)
    budget = stop - first
    rng = random.Random(f"modelmeter-sim|{run.tag}|{index}")
    win_start, win_end = window(run)
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
        role = _pick(rng, traffic.roles, traffic.role_cum)
        shape = sim.roles[role]
        signals: dict[str, int | bool] = {}
        for d in traffic.draws[role]:
            if rng.random() < d.rate:
                signals[d.signal] = _pick(rng, *d.fire)
            else:
                signals[d.signal] = _pick(rng, *d.quiet)
        task_id = f"task-{tag}-{index:06d}-{k:04d}"
        t0 = None  # with a canary the task's start is drawn first: its day decides the version
        task_version, routing = version, policy
        if traffic.candidate is not None:
            t0 = win_start + rand() * span
            day = dt.date(1970, 1, 1) + dt.timedelta(days=int(t0 // 86400))
            task_version = assign_version(policy, task_id, day)
            if task_version != version:
                routing = traffic.candidate
        memo = (task_version, role, *signals.values())
        decision = decisions.get(memo)
        if decision is None:
            decision = decisions[memo] = route(routing, role, signals)
        agent_id = f"{role}-{int(rand() * sim.agents_per_role):02d}"
        task_type = shape.task_types[int(rand() * len(shape.task_types))]
        esc = decision.escalated
        if esc:
            calls = _count(
                rng,
                shape.calls_mean * sim.escalated_calls_factor,
                max(1, round(shape.calls_max * sim.escalated_calls_factor)),
            )
            in_med = shape.input_median * sim.escalated_input_factor
            out_med = shape.output_median * sim.escalated_output_factor
            cached = (
                shape.cache_read_share
                if sim.escalated_cache_read_share is None
                else sim.escalated_cache_read_share
            )
        else:
            calls = _count(rng, shape.calls_mean, shape.calls_max)
            in_med, out_med = shape.input_median, shape.output_median
            cached = shape.cache_read_share
        calls = min(calls, budget - len(events))
        mu_in, mu_out = math.log(in_med), math.log(out_med)
        model = models[decision.model]
        t = win_start + rand() * span if t0 is None else t0
        ttl_key = (
            "cache_write_1h_tokens" if shape.cache_write_ttl == "1h" else "cache_write_5m_tokens"
        )
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
            output = (
                0
                if failed
                else min(int(exp(mu_out + shape.output_sigma * gauss())), model.max_output_tokens)
            )
            latency = model.first_token_ms * exp(
                0.35 * gauss()
            ) + output * model.ms_per_output_token * (0.8 + 0.45 * rand())
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
                "policy_version": task_version,
                "task_type": task_type,
            }
            ev[ttl_key] = cache_write
            events.append(ev)
            keys.append(key)
            t += latency / 1000.0 + think_lo + (think_hi - think_lo) * rand()
        has_feedback = len(events) < budget and rng.random() < (
            fb.escalated_task_share if esc else fb.task_share
        )
        if has_feedback:
            needed: bool | None
            if esc:
                needed = rng.random() >= fb.false_positive_rate
            else:
                needed = rng.random() < fb.false_negative_rate
            consistent = (rng.random() < fb.review_consistency) if role in fb.review_roles else None
            events.append(
                {
                    "event_id": f"sim-{tag}-{first + len(events):010d}",
                    "event_type": "task_feedback",
                    "schema_version": 1,
                    "occurred_at": _iso(min(t + 60 + 3540 * rand(), win_end - 0.001)),
                    "agent_id": agent_id,
                    "task_id": task_id,
                    "role": role,
                    "satisfaction": _pick(rng, traffic.sat_values, traffic.sat_cum),
                    "escalation_needed": needed,
                    "review_consistent": consistent,
                }
            )
            keys.append(key)
        tasks.append(
            SimTask(
                task_id,
                role,
                signals,
                decision.fired,
                decision.trigger,
                calls,
                has_feedback,
                task_version,
            )
        )
        k += 1

    messages: list[tuple[bytes, bytes | None]] = [
        (key, orjson.dumps(ev)) for key, ev in zip(keys, events, strict=True)
    ]
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
        kind, value = bad_message(template, rng, f"bad-{tag}-{index:06d}-{b:06d}")
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


def iter_chunks(
    traffic: Traffic, run: SimRun, indexes: Sequence[int] | None = None
) -> Iterator[Chunk]:
    """The chunks of ``run`` (all, or those in ``indexes``), in order."""
    for index in range(run.chunks) if indexes is None else indexes:
        yield generate_chunk(traffic, run, index)
