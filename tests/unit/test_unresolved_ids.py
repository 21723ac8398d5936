"""The policy's unresolved role and trigger (what a collector records when its source cannot
tell): loaded from the policy file, shown apart by the warehouse, the report and the nightly
checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from pipeline._exceptions import PolicyError
from pipeline.dq import run_dq
from pipeline.policy import load_policy
from pipeline.report import render
from pipeline.report.data import load_daily_report
from pipeline.warehouse import build_warehouse
from tests.fixtures.dq_lake import DAY, NOW, Lake, call, escalated_call
from tests.fixtures.kafka_broker import REPO_ROOT

POLICY = REPO_ROOT / "schemas" / "routing_policy.yaml"


def _policy_with(tmp_path: Path, unresolved: str) -> Path:
    text = POLICY.read_text(encoding="utf-8")
    start = text.index("unresolved:\n")
    end = text.index("\n\n", start)
    path = tmp_path / "policy.yaml"
    path.write_text(text[:start] + unresolved + text[end:], encoding="utf-8")
    return path


def test_the_shipped_policy_names_both_ids():
    policy = load_policy(POLICY)
    assert (policy.unresolved_role, policy.unresolved_trigger) == ("unassigned", "unattributed")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "unresolved:\n  role: architect\n  trigger: unattributed",
            "unresolved.role: 'architect' is a role of this policy",
        ),
        (
            "unresolved:\n  role: unassigned\n  trigger: security_implications",
            "unresolved.trigger: 'security_implications' is a trigger of role architect",
        ),
        (
            "unresolved:\n  role: unassigned\n  colour: blue",
            "unresolved.colour",
        ),
    ],
)
def test_an_unresolved_id_that_is_a_real_one_is_refused_with_its_line(tmp_path, section, message):
    path = _policy_with(tmp_path, section)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert message in str(err.value)
    line = path.read_text().splitlines().index("unresolved:") + 1
    assert f"{path}:{line + 1}:" in str(err.value) or f"{path}:{line + 2}:" in str(err.value)


def test_other_ids_flow_from_the_policy_file(tmp_path):
    path = _policy_with(tmp_path, "unresolved:\n  role: nobody\n  trigger: untold")
    policy = load_policy(path)
    assert (policy.unresolved_role, policy.unresolved_trigger) == ("nobody", "untold")


def test_warehouse_report_and_checks_show_them_apart(make_settings):
    settings = make_settings(kafka=False)
    lake = Lake(Path(settings.lake))
    for back in (3, 2, 1):
        lake.day(DAY - dt.timedelta(days=back))
    lake.day(DAY)
    lake.flush(
        2,
        [
            ("llm_call", call(role="unassigned")),
            ("llm_call", call(role="unassigned", minute=70)),
            ("llm_call", escalated_call(escalation_trigger="unattributed")),
            ("llm_call", escalated_call(escalation_trigger="gut_feeling", minute=75)),
        ],
    )
    build_warehouse(settings)

    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        rows = con.execute(
            "select warning, subject, events from rpt_data_warnings "
            "where event_date = ? and warning like 'un%' order by warning",
            [DAY],
        ).fetchall()
    assert rows == [
        ("unassigned_role", "unassigned", 2),
        ("unattributed_trigger", "architect/unattributed", 1),
        ("unknown_trigger", "architect/gut_feeling", 1),
    ]

    report = load_daily_report(Path(settings.warehouse), DAY)
    w = report.warnings
    assert w.unknown_roles == () and w.unassigned is not None
    assert (w.unassigned.role, w.unassigned.events) == ("unassigned", 2)
    assert [(t.role, t.trigger, t.calls) for t in w.unattributed] == [
        ("architect", "unattributed", 1)
    ]
    assert [(t.role, t.trigger) for t in w.unknown_triggers] == [("architect", "gut_feeling")]
    assert w.count == 3
    text = render(report, "text")
    assert "2 event(s) with role 'unassigned': a collector found no role for them" in text
    assert "1 escalated call(s) of role 'architect' whose source records no trigger" in text
    assert "unknown trigger 'unattributed'" not in text

    dq = run_dq(settings, DAY, now=NOW, data_docs=False)
    known = next(r for r in dq.results if r.name == "known_roles_triggers")
    assert known.status == "fail"
    assert any(
        f.startswith("role unknown to the policy: unassigned (2 calls)") for f in known.failures
    )
    assert any("gut_feeling" in f for f in known.failures)
    assert not any("unattributed" in f for f in known.failures), known.failures
