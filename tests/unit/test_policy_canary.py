"""The canary of the routing policy: the ``canary:`` section, deterministic assignment by task
id, routing by the candidate's rules, ``policy route --task-id``, ``policy diff``, and the
simulator's canary period."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from decimal import Decimal

import pytest

from pipeline._exceptions import PolicyError
from pipeline.cli import main
from pipeline.policy import load_policy, route
from pipeline.policy.canary import (
    assign_version,
    canary_bucket,
    candidate_policy,
    route_task,
)
from pipeline.policy.diff import diff_policies
from pipeline.simulate.traffic import SimRun, iter_chunks, load_traffic
from tests.fixtures.canary_month import CANDIDATE, REPO, canary_policy_file

START = dt.date(2026, 11, 15)
SHIPPED = REPO / "schemas" / "routing_policy.yaml"


@pytest.fixture
def canary_path(tmp_path):
    return canary_policy_file(tmp_path / "policy.yaml", start=START)


def test_canary_section_is_loaded(canary_path):
    policy = load_policy(canary_path)
    canary = policy.canary
    assert canary is not None
    assert (canary.version, canary.share, canary.start) == (CANDIDATE, Decimal("0.20"), START)
    assert str(canary.rules["three_plus_services"]) == "services_affected >= 5"
    assert str(canary.rules["multi_service_conflict"]) == "conflicting_services >= 4"
    assert load_policy(SHIPPED).canary is None


def test_assignment_is_deterministic_by_task_id_and_respects_share_and_start(canary_path):
    policy = load_policy(canary_path)
    ids = [f"task-{i}" for i in range(20_000)]
    after = [assign_version(policy, t, START) for t in ids]
    assert after == [assign_version(policy, t, START + dt.timedelta(days=3)) for t in ids]
    share = after.count(CANDIDATE) / len(ids)
    assert abs(share - 0.20) < 4 * math.sqrt(0.2 * 0.8 / len(ids))
    # before the start every task is routed by the policy's own version
    assert {assign_version(policy, t, START - dt.timedelta(days=1)) for t in ids} == {
        policy.version
    }
    # the candidate's tasks are exactly those whose bucket is below the share
    for t, version in zip(ids[:500], after[:500], strict=True):
        assert (version == CANDIDATE) == (canary_bucket(CANDIDATE, t) < Decimal("0.20"))


def test_candidate_routes_with_its_raised_threshold(canary_path):
    policy = load_policy(canary_path)
    candidate = candidate_policy(policy)
    assert candidate.version == CANDIDATE and candidate.canary is None
    signals = {"services_affected": 3}
    assert route(policy, "architect", signals).escalated
    assert not route(candidate, "architect", signals).escalated
    assert route(candidate, "architect", {"services_affected": 5}).escalated
    ids = [f"t{i}" for i in range(200)]
    routed = [route_task(policy, "architect", signals, t, START) for t in ids]
    for version, decision in routed:
        assert decision.escalated == (version == policy.version)
    assert {v for v, _ in routed} == {policy.version, CANDIDATE}


@pytest.mark.parametrize(
    ("changes", "version", "message", "field"),
    [
        ("    no_such_trigger: {value: 4}\n", CANDIDATE, "unknown trigger", "canary.triggers"),
        ("    three_plus_services: {value: true}\n", CANDIDATE, "is int", "value"),
        (
            '    security_implications: {op: ">=", value: true}\n',
            CANDIDATE,
            "bool signal",
            "op",
        ),
        ("", "2026.11.1", "must differ", "canary.version"),
    ],
)
def test_canary_errors_name_file_line_and_field(tmp_path, changes, version, message, field):
    path = canary_policy_file(tmp_path / "p.yaml", start=START, version=version, changes=changes)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    text = str(info.value)
    assert message in text and field in text
    assert f"{path}:" in text


def test_share_out_of_range_is_an_error(tmp_path):
    path = canary_policy_file(tmp_path / "p.yaml", start=START, share="1.5")
    with pytest.raises(PolicyError, match=r"canary\.share"):
        load_policy(path)


def test_policy_route_names_the_version(canary_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELMETER_POLICY", str(canary_path))
    policy = load_policy(canary_path)
    ids = [f"task-{i}" for i in range(50)]
    cand = next(t for t in ids if assign_version(policy, t, START) == CANDIDATE)
    base = next(t for t in ids if assign_version(policy, t, START) == policy.version)
    argv = ["policy", "route", "--role", "architect", "--signal", "services_affected=3"]
    assert main([*argv, "--task-id", cand, "--date", "2026-11-20"]) == 0
    out = capsys.readouterr().out
    assert f"version: {CANDIDATE} (candidate" in out and "escalated: false" in out
    assert main([*argv, "--task-id", base, "--date", "2026-11-20"]) == 0
    out = capsys.readouterr().out
    assert "version: 2026.11.1 (baseline" in out and "escalated: true" in out
    assert main([*argv, "--task-id", cand, "--date", "2026-11-01"]) == 0  # before the start
    assert "version: 2026.11.1 (baseline" in capsys.readouterr().out


def test_policy_diff_lists_the_changes(canary_path, tmp_path, capsys):
    assert main(["policy", "diff", str(SHIPPED), str(canary_path)]) == 0
    out = capsys.readouterr().out
    assert f"+ canary.version: {CANDIDATE}" in out
    assert "+ canary.triggers.three_plus_services.rule: services_affected >= 5" in out
    assert main(["policy", "diff", str(SHIPPED), str(SHIPPED)]) == 0
    assert "no differences" in capsys.readouterr().out
    bumped = tmp_path / "bumped.yaml"
    text = SHIPPED.read_text(encoding="utf-8").replace('"2026.11.1"', '"2026.12.1"', 1)
    bumped.write_text(text.replace("value: 3}", "value: 4}", 1), encoding="utf-8")
    lines = diff_policies(load_policy(SHIPPED), load_policy(bumped))
    assert lines == [
        "~ version: 2026.11.1 -> 2026.12.1",
        "~ roles.architect.triggers.three_plus_services.rule: "
        "services_affected >= 3 -> services_affected >= 4",
    ]


def test_simulator_produces_a_canary_period(canary_path):
    traffic = load_traffic(canary_path)
    run = SimRun(events=30_000, days=30, end_date=dt.date(2026, 11, 30), seed=3)
    tasks, first_day = [], {}
    for chunk in iter_chunks(traffic, run):
        tasks.extend(chunk.tasks)
        for ev in chunk.events:
            first_day.setdefault(ev["task_id"], dt.date.fromisoformat(ev["occurred_at"][:10]))
    versions = {t.task_id: t.policy_version for t in tasks}
    for chunk in iter_chunks(traffic, run, [0]):
        for ev in chunk.events:
            if ev["event_type"] == "llm_call":
                assert ev["policy_version"] == versions[ev["task_id"]]
    by_period = Counter((first_day[t.task_id] >= START, t.policy_version) for t in tasks if t.calls)
    assert by_period[(False, CANDIDATE)] == 0
    after = by_period[(True, CANDIDATE)] + by_period[(True, "2026.11.1")]
    share = by_period[(True, CANDIDATE)] / after
    assert abs(share - 0.2) < 4 * math.sqrt(0.16 / after)
    policy = traffic.policy
    checked = 0
    for t in tasks:
        if not t.calls:
            continue
        # the version is the one assign_version gives for the task's day, and its rules decide
        assert t.policy_version == assign_version(policy, t.task_id, first_day[t.task_id])
        if t.role == "architect" and t.signals["services_affected"] in (3, 4):
            fired = "three_plus_services" in t.fired
            assert fired == (t.policy_version != CANDIDATE)
            checked += 1
    assert checked > 20


def test_simulator_without_canary_stamps_the_policy_version():
    traffic = load_traffic(SHIPPED)
    run = SimRun(events=3000, days=30, end_date=dt.date(2026, 11, 30), seed=3)
    versions = {ev.get("policy_version") for c in iter_chunks(traffic, run) for ev in c.events}
    assert versions - {None} == {traffic.policy.version}
