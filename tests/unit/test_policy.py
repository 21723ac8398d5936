"""The routing policy: loading, validation errors (file:line: field), routing and KPI targets."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline._exceptions import ConfigError, PolicyError
from pipeline.cli import main
from pipeline.policy import KPI_IDS, KpiTarget, ModelRef, load_policy, parse_signals, route

SHIPPED = Path(__file__).resolve().parents[2] / "schemas" / "routing_policy.yaml"
TEXT = SHIPPED.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def policy():
    return load_policy(SHIPPED)


def _line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line number of the nth line containing ``needle``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth - 1]


def _edited(tmp_path: Path, old: str, new: str, count: int = 1) -> tuple[Path, str]:
    assert old in TEXT, old
    text = TEXT.replace(old, new, count)
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


def _error(path: Path) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value


# -- the shipped policy ---------------------------------------------------------------------


def test_shipped_policy_has_the_hybrid_models_roles_and_triggers(policy):
    """Default GLM-4.5 at zai, premium and baseline Claude Opus 4.1 at anthropic, 5 roles."""
    assert policy.default_model == ModelRef("zai", "glm-4.5")
    assert policy.premium_model == ModelRef("anthropic", "claude-opus-4-1")
    assert policy.baseline_model == ModelRef("anthropic", "claude-opus-4-1")
    assert set(policy.roles) == {"orchestrator", "architect", "integrator", "implementer", "critic"}
    assert [(r, t.id) for r, t in policy.triggers()] == [
        ("architect", "three_plus_services"),
        ("architect", "security_implications"),
        ("architect", "performance_critical_infra"),
        ("integrator", "multi_service_conflict"),
        ("integrator", "system_boundary_change"),
    ]
    for name in ("orchestrator", "implementer", "critic"):
        assert policy.roles[name].premium is None and policy.roles[name].triggers == []
    assert policy.version == "2026.11.1"


def test_shipped_kpi_targets_are_decimal_bands(policy):
    """The six KPI ids of docs/policy.md, bounds as exact Decimals (ratios, not percents)."""
    k = policy.kpi_targets
    assert tuple(k) == KPI_IDS
    assert (k["cost_reduction_pct"].min, k["cost_reduction_pct"].max) == (
        Decimal("0.35"),
        Decimal("0.45"),
    )
    assert k["default_model_share"].min == Decimal("0.95") and k["default_model_share"].max is None
    fp = k["escalation_false_positive_rate"]
    assert fp.max == Decimal("0.05") and fp.max_inclusive is False and fp.min is None
    assert k["satisfaction_avg"].min == Decimal("4.0") and k["satisfaction_avg"].unit == "score"
    assert k["review_consistency"].min == Decimal("0.95")
    assert k["unpriced_calls"].max == 0 and k["unpriced_calls"].unit == "count"
    assert all(
        isinstance(t.min, Decimal | None) and isinstance(t.max, Decimal | None) for t in k.values()
    )


def test_shipped_roi_inputs_are_decimal(policy):
    assert policy.roi.implementation_cost_usd == Decimal("45000.00")
    assert isinstance(policy.roi.monthly_spend_before_usd, Decimal)
    assert policy.roi.horizon_months == 60


def test_policy_check_cli_ok_on_shipped_policy(capsys):
    assert main(["policy", "check", str(SHIPPED)]) == 0
    assert (
        capsys.readouterr().out.strip() == f"ok: {SHIPPED} (version 2026.11.1, 5 roles, 5 triggers)"
    )


# -- KPI target status ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "status"),
    [
        (None, "no_data"),
        (Decimal("0.3499"), "below_range"),
        (Decimal("0.35"), "met"),
        (Decimal("0.40"), "met"),
        (Decimal("0.45"), "met"),
        (Decimal("0.4501"), "above_range"),
    ],
)
def test_band_status_inclusive_at_both_ends(policy, actual, status):
    """A range target says on which side a value falls outside it."""
    assert policy.kpi_targets["cost_reduction_pct"].status(actual) == status


@pytest.mark.parametrize(
    ("kpi", "actual", "status"),
    [
        ("default_model_share", Decimal("0.9499"), "missed"),
        ("default_model_share", Decimal("1"), "met"),
        ("escalation_false_positive_rate", Decimal("0.05"), "missed"),
        ("escalation_false_positive_rate", Decimal("0.0499"), "met"),
    ],
)
def test_a_one_sided_target_is_missed_not_out_of_range(policy, kpi, actual, status):
    assert policy.kpi_targets[kpi].status(actual) == status


def test_exclusive_max_misses_at_the_bound(policy):
    """escalation_false_positive_rate is "< 5 %": exactly 0.05 is missed."""
    target = policy.kpi_targets["escalation_false_positive_rate"]
    assert target.status(Decimal("0.0499")) == "met"
    assert target.status(Decimal("0.05")) == "missed"
    assert target.status(Decimal("0")) == "met"


def test_exclusive_min_and_count_target():
    t = KpiTarget("x", Decimal("1"), None, "count", min_inclusive=False)
    assert t.status(1) == "missed" and t.status(2) == "met"
    unpriced = KpiTarget("unpriced_calls", None, Decimal(0), "count")
    assert unpriced.status(0) == "met" and unpriced.status(1) == "missed"


# -- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "signal", "fires", "stays"),
    [
        ("architect", "services_affected", 3, 2),
        ("architect", "security_sensitive", True, False),
        ("architect", "performance_critical", True, False),
        ("integrator", "conflicting_services", 2, 1),
        ("integrator", "boundary_change", True, False),
    ],
)
def test_each_trigger_fires_at_its_boundary_and_not_below(policy, role, signal, fires, stays):
    """Each trigger escalates at the boundary value and keeps the primary model just below."""
    trigger = next(t for r, t in policy.triggers() if r == role and t.rule.signal == signal)
    up = route(policy, role, {signal: fires})
    assert (up.model, up.provider, up.escalated, up.trigger) == (
        "claude-opus-4-1",
        "anthropic",
        True,
        trigger.id,
    )
    assert up.fired == (trigger.id,)
    assert trigger.id in up.reason
    down = route(policy, role, {signal: stays})
    assert (down.model, down.provider, down.escalated, down.trigger, down.fired) == (
        "glm-4.5",
        "zai",
        False,
        None,
        (),
    )


def test_several_triggers_firing_name_the_first_in_policy_order(policy):
    d = route(
        policy,
        "architect",
        {"performance_critical": True, "security_sensitive": True, "services_affected": 7},
    )
    assert d.trigger == "three_plus_services"
    assert d.fired == ("three_plus_services", "security_implications", "performance_critical_infra")
    assert "also fired: security_implications, performance_critical_infra" in d.reason
    d = route(policy, "architect", {"performance_critical": True, "security_sensitive": True})
    assert d.trigger == "security_implications"


@pytest.mark.parametrize("role", ["orchestrator", "implementer", "critic"])
def test_roles_without_premium_never_escalate(policy, role):
    d = route(
        policy,
        role,
        {
            "services_affected": 9,
            "security_sensitive": True,
            "performance_critical": True,
            "boundary_change": True,
        },
    )
    assert (d.model, d.escalated, d.trigger) == ("glm-4.5", False, None)
    assert "no premium model" in d.reason


def test_missing_signals_take_their_declared_default(policy):
    assert route(policy, "architect", {}).escalated is False


def test_unknown_role_and_bad_signals_raise_config_error(policy):
    with pytest.raises(ConfigError, match="unknown role 'boss'"):
        route(policy, "boss", {})
    with pytest.raises(ConfigError, match="unknown signal 'services'"):
        route(policy, "architect", {"services": 3})
    with pytest.raises(ConfigError, match="expected a bool"):
        route(policy, "architect", {"security_sensitive": 1})
    with pytest.raises(ConfigError, match="expected an integer"):
        route(policy, "architect", {"services_affected": True})
    with pytest.raises(ConfigError, match="outside"):
        route(policy, "architect", {"services_affected": -1})


def test_parse_signals_types_cli_values(policy):
    assert parse_signals(
        policy, ["services_affected=3", "security_sensitive=true", "boundary_change=no"]
    ) == {"services_affected": 3, "security_sensitive": True, "boundary_change": False}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_signals(policy, ["services_affected"])
    with pytest.raises(ConfigError, match="expected an integer"):
        parse_signals(policy, ["services_affected=three"])
    with pytest.raises(ConfigError, match="expected true or false"):
        parse_signals(policy, ["security_sensitive=maybe"])


def test_policy_route_cli_prints_the_decision(capsys):
    code = main(
        [
            "policy",
            "route",
            "--policy",
            str(SHIPPED),
            "--role",
            "integrator",
            "--signal",
            "boundary_change=true",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "model: claude-opus-4-1" in out and "provider: anthropic" in out
    assert "escalated: true" in out and "trigger: system_boundary_change" in out
    assert "reason: trigger system_boundary_change fired" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--role", "boss"],
        ["--role", "architect", "--signal", "nope=1"],
        ["--role", "architect", "--signal", "services_affected=x"],
    ],
)
def test_policy_route_cli_bad_input_is_one_line_exit_2(capsys, argv):
    assert main(["policy", "route", "--policy", str(SHIPPED), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("modelmeter: error: ") and err.count("\n") == 1


# -- validation errors: file, line, field ----------------------------------------------------


def test_yaml_syntax_error_names_the_line(tmp_path):
    path, text = _edited(
        tmp_path, "  glm-4.5:\n    provider: zai", "  glm-4.5:\n    provider: [zai"
    )
    err = _error(path)
    assert "YAML syntax error" in str(err)
    assert err.path == str(path) and err.line is not None
    # the scanner stops within a few lines of the unclosed bracket
    assert _line_of(text, "provider: [zai") <= err.line <= _line_of(text, "provider: [zai") + 3


def test_tab_indentation_is_a_yaml_error_with_line(tmp_path):
    path, text = _edited(tmp_path, "    provider: zai", "\tprovider: zai")
    err = _error(path)
    assert "YAML syntax error" in str(err) and err.line == _line_of(text, "\tprovider: zai")


def test_unknown_model_in_a_role_names_line_and_field(tmp_path):
    path, text = _edited(
        tmp_path,
        "    premium: claude-opus-4-1\n    description: designs",
        "    premium: claude-opus-9\n    description: designs",
    )
    err = _error(path)
    assert (err.line, err.field) == (
        _line_of(text, "premium: claude-opus-9"),
        "roles.architect.premium",
    )
    assert "unknown model 'claude-opus-9'" in str(err)
    assert str(err).startswith(f"{path}:{err.line}: roles.architect.premium: ")


def test_unknown_default_model_names_line(tmp_path):
    path, text = _edited(tmp_path, "default_model: glm-4.5", "default_model: glm-5")
    err = _error(path)
    assert (err.line, err.field) == (_line_of(text, "default_model: glm-5"), "default_model")


def test_role_without_primary(tmp_path):
    path, text = _edited(tmp_path, "  critic:\n    primary: glm-4.5\n", "  critic:\n")
    err = _error(path)
    assert (err.line, err.field) == (_line_of(text, "  critic:"), "roles.critic")
    assert "has no primary model" in str(err)


def test_trigger_on_role_without_premium(tmp_path):
    path, text = _edited(
        tmp_path, "    premium: claude-opus-4-1\n    description: merges", "    description: merges"
    )
    err = _error(path)
    assert err.field == "roles.integrator.triggers"
    assert err.line == _line_of(text, "    triggers:", 2)
    assert "no premium model" in str(err)


def test_duplicate_trigger_ids(tmp_path):
    path, text = _edited(tmp_path, "- id: system_boundary_change", "- id: three_plus_services")
    err = _error(path)
    assert err.field == "roles.integrator.triggers[1].id"
    assert err.line == _line_of(text, "- id: three_plus_services", 2)
    assert "duplicate trigger id 'three_plus_services'" in str(err)


def test_rule_over_undeclared_signal(tmp_path):
    path, text = _edited(tmp_path, "signal: boundary_change, op", "signal: boundary_changes, op")
    err = _error(path)
    assert err.field == "roles.integrator.triggers[1].rule.signal"
    assert err.line == _line_of(text, "boundary_changes")
    assert "unknown signal 'boundary_changes'" in str(err)


def test_rule_value_of_the_wrong_type(tmp_path):
    path, text = _edited(tmp_path, 'op: ">=", value: 3}', 'op: ">=", value: true}')
    err = _error(path)
    assert err.field == "roles.architect.triggers[0].rule.value"
    assert err.line == _line_of(text, "value: true}")


def test_bool_signal_with_ordering_operator(tmp_path):
    path, text = _edited(tmp_path, 'security_sensitive, op: "=="', 'security_sensitive, op: ">="')
    err = _error(path)
    assert err.field == "roles.architect.triggers[1].rule.op" and "== or !=" in str(err)


def test_unknown_rule_operator_is_rejected_by_the_schema(tmp_path):
    path, text = _edited(tmp_path, 'services_affected, op: ">="', 'services_affected, op: "=~"')
    err = _error(path)
    assert err.field == "roles.architect.triggers[0].rule.op"
    assert err.line == _line_of(text, '"=~"')


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (
            "    min: 0.95\n    unit: ratio\n    description: at least 95 % of calls",
            "    min: 95\n    unit: ratio\n    description: at least 95 % of calls",
            "kpi_targets.default_model_share.min",
        ),
        ("    min: 4.0\n", "    min: 6\n", "kpi_targets.satisfaction_avg.min"),
        ("    max: 0.05\n", "    max: -0.05\n", "kpi_targets.escalation_false_positive_rate.max"),
        ("    max: 0\n", "    max: -1\n", "kpi_targets.unpriced_calls.max"),
    ],
)
def test_kpi_target_out_of_range(tmp_path, old, new, field):
    path, text = _edited(tmp_path, old, new)
    err = _error(path)
    assert err.field == field and "out of range" in str(err)
    assert err.line == _line_of(text, new.strip().splitlines()[0])


def test_kpi_target_min_greater_than_max(tmp_path):
    path, text = _edited(tmp_path, "    min: 0.35\n    max: 0.45", "    min: 0.45\n    max: 0.35")
    err = _error(path)
    assert err.field == "kpi_targets.cost_reduction_pct.min"
    assert err.line == _line_of(text, "    min: 0.45")
    assert "min 0.45 > max 0.35" in str(err)


def test_unknown_and_missing_kpi_ids(tmp_path):
    path, text = _edited(tmp_path, "  satisfaction_avg:", "  satisfaction_mean:")
    err = _error(path)
    assert err.field == "kpi_targets.satisfaction_mean" and err.line == _line_of(
        text, "satisfaction_mean"
    )


def test_missing_required_section_and_unknown_field(tmp_path):
    path, text = _edited(tmp_path, 'version: "2026.11.1"', 'versoin: "2026.11.1"')
    err = _error(path)
    # pydantic reports the missing 'version' first; the file has no such line -> line 1 is fine
    assert err.field in ("version", "versoin")
    path, text = _edited(tmp_path, "    min: 0.35\n", "    min: 0.35\n    target: 0.4\n")
    err = _error(path)
    assert (err.field, err.line) == (
        "kpi_targets.cost_reduction_pct.target",
        _line_of(text, "target: 0.4"),
    )
    assert "unknown field" in str(err)


def test_duplicate_yaml_key(tmp_path):
    path, text = _edited(tmp_path, "    min: 0.35\n", "    min: 0.35\n    min: 0.30\n")
    err = _error(path)
    assert (err.field, err.line) == (
        "kpi_targets.cost_reduction_pct.min",
        _line_of(text, "min: 0.30"),
    )
    assert "duplicate key" in str(err)


def test_version_must_be_a_string(tmp_path):
    path, text = _edited(tmp_path, 'version: "2026.11.1"', "version: 2026.11")
    err = _error(path)
    assert (err.field, err.line) == ("version", _line_of(text, "version: 2026.11"))


def test_simulation_section_is_the_simulators_but_must_be_a_mapping(tmp_path):
    """Routing ignores the traffic profile's content (tests/unit/test_simulate.py checks it),
    but the section itself must be a mapping."""
    path, _ = _edited(
        tmp_path, "    system_boundary_change: 0.07", "    system_boundry_change: 0.07"
    )
    assert load_policy(path).version == "2026.11.1"
    text = TEXT[: TEXT.index("\nsimulation:")] + "\nsimulation: [1, 2]\n"
    path.write_text(text, encoding="utf-8")
    err = _error(path)
    assert (err.field, err.line) == ("simulation", _line_of(text, "simulation: [1, 2]"))


def test_missing_file_and_empty_file(tmp_path):
    err = _error(tmp_path / "nope.yaml")
    assert "no such file" in str(err)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert "empty" in str(_error(empty))


def test_policy_check_cli_fails_with_file_line_field_exit_2(tmp_path):
    """Through the real console entry point: one line, file:line: field: problem, exit 2."""
    path, text = _edited(tmp_path, "default_model: glm-4.5", "default_model: gpt-x")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "policy", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=SHIPPED.parents[1],
    )
    assert proc.returncode == 2
    line = _line_of(text, "default_model: gpt-x")
    assert proc.stderr == (
        f"modelmeter: error: {path}:{line}: default_model: unknown model 'gpt-x' "
        "(models: glm-4.5, claude-opus-4-1)\n"
    )
    assert proc.stdout == ""
