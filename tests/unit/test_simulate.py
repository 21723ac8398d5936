"""The simulator's traffic model (pure, no broker): determinism, contract validity, routing,
trigger rates, bad/duplicate messages, and plausible KPIs at the shipped prices."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from pipeline._exceptions import ConfigError, ContractError, PolicyError
from pipeline.cli import main
from pipeline.contract import parse_event
from pipeline.policy import Rule, Signal, load_policy, route
from pipeline.prices import TOKEN_KINDS, load_price_book
from pipeline.simulate import (
    BAD_KINDS,
    CHUNK_EVENTS,
    SimRun,
    generate_chunk,
    iter_chunks,
    load_profile,
    load_traffic,
    summarize,
)
from pipeline.simulate.traffic import _values

# one worker runs the module: its module-scoped fixture is made once, not once per worker
pytestmark = pytest.mark.xdist_group("simulated-month")

REPO = Path(__file__).resolve().parents[2]
END = dt.date(2026, 10, 31)
NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)  # "the consumer's clock" for parse_event
MONTH_EVENTS = 120_000


@pytest.fixture(scope="module")
def traffic():
    """The shipped policy and its simulation: section."""
    return load_traffic(REPO / "schemas" / "routing_policy.yaml")


@pytest.fixture(scope="module")
def policy(traffic):
    return traffic.policy


@pytest.fixture(scope="module")
def month(traffic):
    """A simulated month (30 days ending 2026-10-31), generated once for the rate tests."""
    run = SimRun(events=MONTH_EVENTS, days=30, end_date=END, seed=20261031)
    return run, list(iter_chunks(traffic, run))


def _events(chunks):
    return [ev for c in chunks for ev in c.events]


# -- determinism --------------------------------------------------------------------------


def test_same_seed_gives_identical_messages(traffic):
    run = SimRun(
        events=5000, days=7, end_date=END, seed=7, bad_fraction=0.05, duplicate_fraction=0.05
    )
    first = [c.messages for c in iter_chunks(traffic, run)]
    again = [c.messages for c in iter_chunks(traffic, run)]
    assert first == again
    assert sum(len(m) for m in first) == 5000 + 250 + 250


def test_different_seed_gives_different_ids_and_values(traffic):
    a = _events(iter_chunks(traffic, SimRun(events=3000, days=7, end_date=END, seed=1)))
    b = _events(iter_chunks(traffic, SimRun(events=3000, days=7, end_date=END, seed=2)))
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}
    strip = [{k: v for k, v in e.items() if k not in ("event_id", "task_id")} for e in a]
    other = [{k: v for k, v in e.items() if k not in ("event_id", "task_id")} for e in b]
    assert strip != other


def test_same_seed_other_days_never_reuses_an_event_id(traffic):
    """A nightly run with the default seed must not look like a retry of yesterday's run."""
    a = _events(iter_chunks(traffic, SimRun(events=100, days=1, end_date=END, seed=42)))
    b = _events(
        iter_chunks(
            traffic, SimRun(events=100, days=1, end_date=END - dt.timedelta(days=1), seed=42)
        )
    )
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}


def test_chunks_are_independent_of_how_they_are_split(traffic):
    """Chunk j depends only on (policy, run, j): producer processes may take any subset."""
    run = SimRun(events=3 * CHUNK_EVENTS + 17, days=3, end_date=END, seed=5, bad_fraction=0.01)
    whole = list(iter_chunks(traffic, run))
    odd = list(iter_chunks(traffic, run, indexes=[3, 1]))
    assert [c.messages for c in odd] == [whole[3].messages, whole[1].messages]
    assert [len(c.events) for c in whole] == [CHUNK_EVENTS] * 3 + [17]


# -- every event is valid, routed by the policy, inside the window --------------------------


def test_every_valid_event_passes_the_contract_and_every_bad_one_fails(traffic):
    run = SimRun(
        events=6000, days=30, end_date=END, seed=11, bad_fraction=0.1, duplicate_fraction=0.02
    )
    chunks = list(iter_chunks(traffic, run))
    valid_ids = {e["event_id"] for e in _events(chunks)}
    ok = bad = 0
    for chunk in chunks:
        for key, value in chunk.messages:
            try:
                event = parse_event(value, now=NOW)
            except ContractError:
                bad += 1
                continue
            ok += 1
            assert event.event_id in valid_ids
            assert key == event.task_id.encode()
    assert bad == 600 == sum(sum(c.bad_kinds.values()) for c in chunks)
    assert ok == 6000 + 120


def test_bad_messages_cover_many_kinds_and_never_reuse_a_valid_id(traffic):
    run = SimRun(events=20_000, days=5, end_date=END, seed=3, bad_fraction=0.1)
    chunks = list(iter_chunks(traffic, run))
    kinds = Counter()
    for c in chunks:
        kinds.update(c.bad_kinds)
    assert set(kinds) == set(BAD_KINDS)  # 2000 draws over ~20 kinds: all appear
    valid_ids = {e["event_id"].encode() for e in _events(chunks)}
    valid_values = {orjson.dumps(e) for e in _events(chunks)}
    for c in chunks:
        for _, value in c.messages:
            if value not in valid_values:
                assert not any(i in (value or b"") for i in list(valid_ids)[:50])


def test_duplicates_resend_identical_bytes_after_the_original(traffic):
    run = SimRun(events=10_000, days=5, end_date=END, seed=9, duplicate_fraction=0.03)
    dups = 0
    for chunk in iter_chunks(traffic, run):
        seen: set[bytes | None] = set()
        for _, value in chunk.messages:
            if value in seen:
                dups += 1
            seen.add(value)
        assert chunk.duplicates == len(chunk.messages) - len(chunk.events)
    assert dups == math.floor(10_000 * 0.03) == 300


def test_fractions_are_exact_floor_of_events_times_fraction(traffic):
    run = SimRun(
        events=7777, days=2, end_date=END, seed=1, bad_fraction=0.013, duplicate_fraction=0.021
    )
    s = summarize(iter_chunks(traffic, run))
    assert (s.valid_events, s.bad_messages, s.duplicates) == (7777, 101, 163)
    assert s.as_dict()["messages"] == 7777 + 101 + 163


def test_calls_follow_route_and_carry_trigger_and_policy_version(traffic, policy):
    run = SimRun(events=8000, days=3, end_date=END, seed=13)
    for chunk in iter_chunks(traffic, run):
        tasks = {t.task_id: t for t in chunk.tasks}
        for ev in chunk.events:
            task = tasks[ev["task_id"]]
            assert ev["role"] == task.role
            if ev["event_type"] != "llm_call":
                continue
            decision = route(policy, task.role, task.signals)
            assert (ev["model"], ev["provider"]) == (decision.model, decision.provider)
            assert ev["escalated"] is decision.escalated
            assert ev["escalation_trigger"] == decision.trigger
            assert ev["policy_version"] == policy.version
            if ev["escalated"]:
                assert ev["escalation_trigger"] in {t.id for _, t in policy.triggers()}


def test_events_stay_inside_the_days_and_cover_each_day(traffic):
    run = SimRun(events=20_000, days=10, end_date=END, seed=17)
    days = Counter(ev["occurred_at"][:10] for ev in _events(iter_chunks(traffic, run)))
    expected = {(END - dt.timedelta(days=i)).isoformat() for i in range(10)}
    assert set(days) == expected
    assert min(days.values()) > 20_000 / 10 * 0.8


def test_not_after_bounds_a_run_of_today(traffic):
    """A run ending today has no event after the clock (the consumer rejects the future)."""
    now = dt.datetime(2026, 10, 31, 9, 30, tzinfo=dt.UTC)
    run = SimRun(events=3000, days=1, end_date=END, seed=4, not_after=now)
    assert (
        max(ev["occurred_at"] for ev in _events(iter_chunks(traffic, run))) < "2026-10-31T09:30:00"
    )


def test_token_shapes_by_role(policy, month):
    """Architects write the longest outputs, critics read the longest inputs (ordinary tasks)."""
    _, chunks = month
    out, inp = Counter(), Counter()
    n = Counter()
    for ev in _events(chunks):
        if ev["event_type"] == "llm_call" and not ev["escalated"] and ev["status"] == "ok":
            n[ev["role"]] += 1
            out[ev["role"]] += ev["output_tokens"]
            inp[ev["role"]] += ev["input_tokens"] + ev["cache_read_tokens"]
    mean_out = {r: out[r] / n[r] for r in n}
    mean_in = {r: inp[r] / n[r] for r in n}
    assert max(mean_out, key=mean_out.get) == "architect"
    assert max(mean_in, key=mean_in.get) == "critic"


def test_cache_and_error_fields(policy, month):
    _, chunks = month
    calls = [e for e in _events(chunks) if e["event_type"] == "llm_call"]
    glm = [e for e in calls if e["model"] == "glm-4.5"]
    opus = [e for e in calls if e["model"] == "claude-opus-4-1"]
    assert all(e["cache_write_5m_tokens"] == e["cache_write_1h_tokens"] == 0 for e in glm)
    assert sum(e["cache_read_tokens"] > 0 for e in glm) > len(glm) / 3
    assert any(e["cache_write_1h_tokens"] > 0 for e in opus if e["role"] == "architect")
    errors = [e for e in calls if e["status"] == "error"]
    assert all(e["output_tokens"] == 0 for e in errors)
    rate = len(errors) / len(calls)
    assert abs(rate - 0.01) < 4 * math.sqrt(0.01 * 0.99 / len(calls))
    # latencies by model: Opus is slower per call than GLM on average
    assert (sum(e["latency_ms"] for e in opus) / len(opus)) > (
        sum(e["latency_ms"] for e in glm) / len(glm)
    )


# -- rates over a simulated month -----------------------------------------------------------


def test_trigger_rates_within_sampling_error(traffic, policy, month):
    """Each trigger's condition holds for its role's tasks at the configured rate (4 sigma),
    and the recorded escalation_trigger (first by policy order) at p_k x prod(1 - p_j<k)."""
    _, chunks = month
    tasks = [t for c in chunks for t in c.tasks]
    rates = traffic.profile.trigger_rates
    for role_name, role in policy.roles.items():
        mine = [t for t in tasks if t.role == role_name]
        quiet_before = 1.0
        for trig in role.triggers:
            p = rates[trig.id]
            sigma = math.sqrt(p * (1 - p) / len(mine))
            fired = sum(trig.id in t.fired for t in mine) / len(mine)
            assert abs(fired - p) < 4 * sigma, (trig.id, fired, p)
            attributed = sum(t.trigger == trig.id for t in mine) / len(mine)
            q = p * quiet_before
            assert abs(attributed - q) < 4 * math.sqrt(q * (1 - q) / len(mine)), (
                trig.id,
                attributed,
                q,
            )
            quiet_before *= 1 - p


def test_role_mix_follows_task_shares(traffic, month):
    _, chunks = month
    tasks = Counter(t.role for c in chunks for t in c.tasks)
    total = sum(tasks.values())
    shares = {r: float(s.task_share) for r, s in traffic.profile.roles.items()}
    norm = sum(shares.values())
    for role, share in shares.items():
        p = share / norm
        assert abs(tasks[role] / total - p) < 4 * math.sqrt(p * (1 - p) / total), role


def test_month_meets_the_policy_kpis_at_the_shipped_prices(policy, month):
    """The default demo shows the strategy working: cost reduction in the 35-45 % band against
    the all-Claude baseline, >= 95 % of calls on GLM, feedback KPIs met."""
    _, chunks = month
    book = load_price_book(REPO / "schemas" / "prices.csv")
    at = dt.datetime.combine(END, dt.time(), dt.UTC)
    base_price = book.price_at(policy.baseline_model.provider, policy.baseline_model.model, at)

    def cost(price, ev):
        return sum(ev[f"{k}_tokens"] * getattr(price, f"usd_per_mtok_{k}") for k in TOKEN_KINDS)

    actual = baseline = Decimal(0)
    calls = default = 0
    escalated_tasks = set()
    sat, fp, fp_n, rc, rc_n = [], 0, 0, 0, 0
    for ev in _events(chunks):
        if ev["event_type"] == "llm_call":
            price = book.price_at(ev["provider"], ev["model"], at)
            assert price is not None, ev["model"]
            actual += cost(price, ev)
            baseline += cost(base_price, ev)
            calls += 1
            default += ev["model"] == policy.default_model.model
            if ev["escalated"]:
                escalated_tasks.add(ev["task_id"])
        else:
            sat.append(ev["satisfaction"])
            if ev["task_id"] in escalated_tasks and ev["escalation_needed"] is not None:
                fp_n += 1
                fp += ev["escalation_needed"] is False
            if ev["review_consistent"] is not None:
                rc_n += 1
                rc += ev["review_consistent"]
    k = policy.kpi_targets
    reduction = (baseline - actual) / baseline
    assert k["cost_reduction_pct"].status(reduction) == "met", reduction
    assert k["default_model_share"].status(Decimal(default) / calls) == "met"
    assert k["satisfaction_avg"].status(Decimal(sum(sat)) / len(sat)) == "met"
    assert k["review_consistency"].status(Decimal(rc) / rc_n) == "met"
    assert k["escalation_false_positive_rate"].status(Decimal(fp) / fp_n) == "met"
    assert abs(fp / fp_n - 0.03) < 4 * math.sqrt(0.03 * 0.97 / fp_n)
    assert abs(rc / rc_n - 0.97) < 4 * math.sqrt(0.03 * 0.97 / rc_n)


def test_summary_token_totals_are_exact_sums_over_valid_llm_calls(traffic):
    run = SimRun(
        events=5000, days=3, end_date=END, seed=21, duplicate_fraction=0.1, bad_fraction=0.1
    )
    chunks = list(iter_chunks(traffic, run))
    data = summarize(chunks).as_dict()
    calls = [e for e in _events(chunks) if e["event_type"] == "llm_call"]
    for kind in TOKEN_KINDS:
        assert data["tokens"][kind] == sum(e[f"{kind}_tokens"] for e in calls)
    assert data["llm_call_events"] == len(calls)
    assert data["distinct_event_ids"] == len({e["event_id"] for e in _events(chunks)}) == 5000
    assert data["llm_call_events"] + data["task_feedback_events"] == 5000


# -- signal drawing for every operator -----------------------------------------------------


@pytest.mark.parametrize("op", ["==", "!=", ">=", ">", "<=", "<"])
def test_signal_values_make_a_rule_fire_or_stay_quiet(op):
    sig = Signal("n", "int", 0, min=0, max=10)
    rule = Rule("n", op, 4)
    fire, _ = _values(sig, rule, True, "t")
    quiet, _ = _values(sig, rule, False, "t")
    assert fire and quiet
    assert all(rule.matches(v) for v in fire) and not any(rule.matches(v) for v in quiet)
    assert all(0 <= v <= 10 for v in fire + quiet)


def test_a_rule_that_cannot_stay_quiet_is_a_config_error():
    with pytest.raises(ConfigError, match="no value makes trigger t stay quiet"):
        _values(Signal("n", "int", 0, min=0), Rule("n", ">=", 0), False, "t")


# -- run parameters and the CLI ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bad_fraction": 1.5}, "--bad-fraction must be between 0 and 1"),
        ({"duplicate_fraction": -0.1}, "--duplicate-fraction must be between 0 and 1"),
        ({"days": 0}, "--days must be >= 1"),
        ({"events": -1}, "--events must be >= 0"),
        ({"days": 5000}, "--days 5000 ending 2026-10-31 would start before 2020-01-01"),
    ],
)
def test_run_parameters_are_checked(kwargs, message):
    values = {"events": 10, "days": 1, "end_date": END, "seed": 1} | kwargs
    with pytest.raises(ConfigError, match=message):
        SimRun(**values)


def test_policy_without_simulation_section_is_a_config_error(tmp_path):
    """Routing does not need the section (load_policy works); the simulator does."""
    text = (REPO / "schemas" / "routing_policy.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text[: text.index("\nsimulation:")] + "\n")
    assert load_policy(path).version
    with pytest.raises(ConfigError, match="has no simulation: section"):
        load_traffic(path)


def _edited_policy(tmp_path, old: str, new: str):
    text = (REPO / "schemas" / "routing_policy.yaml").read_text()
    assert old in text, old
    text = text.replace(old, new, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    first = new.strip().splitlines()[0]
    line = next(i for i, content in enumerate(text.splitlines(), 1) if first in content)
    return path, line


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "    system_boundary_change: 0.07",
            "    system_boundry_change: 0.07",
            "simulation.trigger_rates.system_boundry_change",
            "unknown trigger 'system_boundry_change'",
        ),
        (
            "    critic:\n      task_share",
            "    reviewer:\n      task_share",
            "simulation.roles.reviewer",
            "unknown role 'reviewer'",
        ),
        (
            "  agents_per_role: 8",
            "  agents_per_role: eight",
            "simulation.agents_per_role",
            "input should be a valid integer",
        ),
    ],
)
def test_simulation_section_errors_name_file_line_and_field(
    tmp_path, capsys, old, new, field, message
):
    """The profile's errors are PolicyErrors like the policy's, from load_profile and from
    `policy check`, while routing (load_policy) ignores the section."""
    path, line = _edited_policy(tmp_path, old, new)
    with pytest.raises(PolicyError) as info:
        load_profile(path)
    assert (info.value.field, info.value.line) == (field, line)
    assert message in str(info.value)
    assert load_policy(path).roles  # the routing policy itself is fine
    assert main(["policy", "check", str(path)]) == 2
    assert capsys.readouterr().err == f"modelmeter: error: {info.value}\n"


def test_generate_chunk_is_pure(traffic):
    run = SimRun(events=50, days=1, end_date=END, seed=1)
    assert generate_chunk(traffic, run, 0).messages == generate_chunk(traffic, run, 0).messages


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--end-date", "31/10/2026"], "--end-date: expected YYYY-MM-DD, got '31/10/2026'"),
        (["--end-date", "2999-01-01"], "--end-date 2999-01-01 is in the future"),
        (["--bad-fraction", "2"], "--bad-fraction must be between 0 and 1, got 2.0"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
    ],
)
def test_cli_bad_options_are_one_line_exit_2_before_touching_kafka(capsys, argv, message):
    # an unreachable broker: the options are checked first, so this never connects
    code = main(["simulate", "--events", "10", "--bootstrap-servers", "127.0.0.1:1", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"modelmeter: error: {message}") and err.count("\n") == 1


def test_start_date_is_not_an_option(capsys):
    """The last day of traffic is --end-date; the old --start-date spelling is refused."""
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--events", "10", "--start-date", "2026-10-31"])
    assert info.value.code == 2
    assert "unrecognized arguments: --start-date" in capsys.readouterr().err
