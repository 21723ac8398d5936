"""The routing policy: which model each role uses, when it escalates, which targets it must meet.

The policy is data (``schemas/routing_policy.yaml``, format in docs/policy.md); this module
loads and validates it and holds the pure logic over it::

    policy = load_policy("schemas/routing_policy.yaml")      # PolicyError names file:line: field
    decision = route(policy, "architect", {"services_affected": 4})
    decision.model, decision.escalated, decision.trigger     # 'claude-opus-4-1', True, 'three_plus_services'
    policy.kpi_targets["default_model_share"].status(Decimal("0.97"))   # 'met'
    roi_projection(policy.roi, Decimal("0.40")).break_even_month

Trigger rules are one comparison of a declared task signal with a constant
(``{signal: services_affected, op: ">=", value: 3}``); nothing in the file is evaluated as
code. Money and ratios are :class:`decimal.Decimal` (YAML floats are read from their text,
never through a binary float).
"""

from __future__ import annotations

import argparse
import dataclasses
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from pipeline._exceptions import ConfigError, PolicyError
from pipeline.config_files import read_yaml

__all__ = [
    "KPI_IDS",
    "Decision",
    "KpiTarget",
    "ModelRef",
    "Policy",
    "Role",
    "RoiInputs",
    "RoiProjection",
    "Rule",
    "Signal",
    "SimulationProfile",
    "SimRole",
    "SimModel",
    "SimFeedback",
    "Trigger",
    "load_policy",
    "parse_signals",
    "roi_projection",
    "route",
    "run_check_cli",
    "run_route_cli",
]

KPI_IDS = (
    "cost_reduction_pct",
    "default_model_share",
    "escalation_false_positive_rate",
    "satisfaction_avg",
    "review_consistency",
    "unpriced_calls",
)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}

# ---------------------------------------------------------------------------------------------
# The public, typed policy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model at a provider (prices are looked up by this pair)."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class Signal:
    """A declared task signal that trigger rules may test."""

    name: str
    type: Literal["int", "bool"]
    default: int | bool
    description: str = ""
    min: int | None = None
    max: int | None = None

    def coerce(self, value: object) -> int | bool:
        """``value`` as this signal's type; ConfigError when it is not one (strings are parsed)."""
        if isinstance(value, str):
            text = value.strip().lower()
            if self.type == "bool":
                if text in ("true", "yes", "1"):
                    return True
                if text in ("false", "no", "0"):
                    return False
                raise ConfigError(f"signal {self.name}: expected true or false, got {value!r}")
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(f"signal {self.name}: expected an integer, got {value!r}") from None
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"signal {self.name}: expected a bool, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"signal {self.name}: expected an integer, got {value!r}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ConfigError(f"signal {self.name}: {value} is outside [{self.min}, {self.max}]")
        return value


@dataclass(frozen=True, slots=True)
class Rule:
    """One comparison of a task signal with a constant: ``services_affected >= 3``."""

    signal: str
    op: Literal["==", "!=", ">=", ">", "<=", "<"]
    value: int | bool

    def matches(self, value: int | bool) -> bool:
        return _OPS[self.op](value, self.value)

    def __str__(self) -> str:
        value = str(self.value).lower() if isinstance(self.value, bool) else str(self.value)
        return f"{self.signal} {self.op} {value}"


@dataclass(frozen=True, slots=True)
class Trigger:
    """An escalation trigger of a role."""

    id: str
    description: str
    rule: Rule


@dataclass(frozen=True, slots=True)
class Role:
    """An agent role: its primary model, optional premium model and escalation triggers."""

    name: str
    primary: ModelRef
    premium: ModelRef | None
    triggers: list[Trigger] = field(default_factory=list)
    description: str = ""


@dataclass(frozen=True, slots=True)
class KpiTarget:
    """A KPI's target band; a missing bound is open."""

    kpi: str
    min: Decimal | None
    max: Decimal | None
    unit: Literal["ratio", "score", "count"]
    min_inclusive: bool = True
    max_inclusive: bool = True
    description: str = ""

    def status(self, actual: Decimal | int | None) -> Literal["met", "missed", "no_data"]:
        """``met`` when ``actual`` is inside the band, ``missed`` outside, ``no_data`` for None."""
        if actual is None:
            return "no_data"
        if self.min is not None and (actual < self.min or (actual == self.min and not self.min_inclusive)):
            return "missed"
        if self.max is not None and (actual > self.max or (actual == self.max and not self.max_inclusive)):
            return "missed"
        return "met"

    def __str__(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>=' if self.min_inclusive else '>'} {self.min}")
        if self.max is not None:
            parts.append(f"{'<=' if self.max_inclusive else '<'} {self.max}")
        return " and ".join(parts) or "any"


@dataclass(frozen=True, slots=True)
class RoiInputs:
    """Inputs of the ROI projection (USD)."""

    implementation_cost_usd: Decimal
    monthly_spend_before_usd: Decimal
    horizon_months: int = 60


@dataclass(frozen=True, slots=True)
class RoiProjection:
    """ROI of the strategy over the horizon at a given monthly cost reduction."""

    monthly_savings_usd: Decimal
    horizon_savings_usd: Decimal
    roi: Decimal
    break_even_month: int | None

    def at_money_scale(self) -> RoiProjection:
        """The amounts rounded half-even to 12 decimals, as DECIMAL(38,12) (mart_roi) holds them."""
        def scale(value: Decimal) -> Decimal:
            with localcontext(prec=60):  # 26 + 12 digits need more than the default 28
                return value.quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)

        return dataclasses.replace(self, monthly_savings_usd=scale(self.monthly_savings_usd),
                                   horizon_savings_usd=scale(self.horizon_savings_usd),
                                   roi=scale(self.roi))


_MONEY_QUANTUM = Decimal("1E-12")


@dataclass(frozen=True, slots=True)
class SimRole:
    """Traffic shape of one role in the simulator."""

    task_share: Decimal
    calls_mean: float
    calls_max: int
    input_median: float
    input_sigma: float
    output_median: float
    output_sigma: float
    cache_read_share: float
    cache_write_ttl: Literal["5m", "1h"]
    task_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimModel:
    """Latency and prompt-cache behaviour of one model in the simulator."""

    first_token_ms: float
    ms_per_output_token: float
    cache_writes: bool
    context_tokens: int
    max_output_tokens: int


@dataclass(frozen=True, slots=True)
class SimFeedback:
    """How the simulator draws task_feedback events."""

    task_share: float
    escalated_task_share: float
    satisfaction: tuple[tuple[int, float], ...]
    false_positive_rate: float
    false_negative_rate: float
    review_consistency: float
    review_roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimulationProfile:
    """The ``simulation:`` section: the shape of ``modelmeter simulate``'s traffic."""

    roles: dict[str, SimRole]
    trigger_rates: dict[str, float]
    models: dict[str, SimModel]
    feedback: SimFeedback
    agents_per_role: int
    error_rate: float
    think_time_min_s: float
    think_time_max_s: float
    escalated_calls_factor: float
    escalated_input_factor: float
    escalated_output_factor: float
    escalated_cache_read_share: float | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated routing policy."""

    version: str
    models: dict[str, ModelRef]
    default_model: ModelRef
    premium_model: ModelRef
    baseline_model: ModelRef
    signals: dict[str, Signal]
    roles: dict[str, Role]
    kpi_targets: dict[str, KpiTarget]
    roi: RoiInputs
    simulation: SimulationProfile | None = None
    path: str | None = None

    def triggers(self) -> list[tuple[str, Trigger]]:
        """Every (role name, trigger), in policy order."""
        return [(role.name, t) for role in self.roles.values() for t in role.triggers]


@dataclass(frozen=True, slots=True)
class Decision:
    """The routing decision for one task."""

    model: str
    provider: str
    escalated: bool
    trigger: str | None
    reason: str
    fired: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Pure logic
# ---------------------------------------------------------------------------------------------


def parse_signals(policy: Policy, pairs: Sequence[str]) -> dict[str, int | bool]:
    """``["services_affected=3", "security_sensitive=true"]`` -> typed signals (ConfigError if bad)."""
    signals: dict[str, int | bool] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"signal {pair!r}: expected KEY=VALUE")
        signals[key] = _signal(policy, key).coerce(value)
    return signals


def _signal(policy: Policy, name: str) -> Signal:
    try:
        return policy.signals[name]
    except KeyError:
        known = ", ".join(policy.signals) or "none"
        raise ConfigError(f"unknown signal {name!r} (declared signals: {known})") from None


def route(policy: Policy, role: str, signals: Mapping[str, object]) -> Decision:
    """Which model a task of ``role`` runs on, given its ``signals``.

    Signals the task does not report take their declared default. When several triggers fire,
    the decision names the first in policy order and lists all of them in ``fired``.
    Raises ConfigError for an unknown role, an undeclared signal or a value of the wrong type.
    """
    try:
        spec = policy.roles[role]
    except KeyError:
        raise ConfigError(f"unknown role {role!r} (roles: {', '.join(policy.roles)})") from None
    values = {name: sig.default for name, sig in policy.signals.items()}
    for name, value in signals.items():
        values[name] = _signal(policy, name).coerce(value)
    fired = tuple(t.id for t in spec.triggers if t.rule.matches(values[t.rule.signal]))
    primary = spec.primary
    if not fired or spec.premium is None:
        if spec.premium is None:
            reason = f"role {role} has no premium model; primary {primary}"
        else:
            reason = f"no trigger of role {role} fired; primary {primary}"
        return Decision(primary.model, primary.provider, False, None, reason, ())
    first = next(t for t in spec.triggers if t.id == fired[0])
    reason = (f"trigger {first.id} fired ({first.rule}; {first.rule.signal}="
              f"{str(values[first.rule.signal]).lower()}): premium {spec.premium}")
    if len(fired) > 1:
        reason += f"; also fired: {', '.join(fired[1:])}"
    return Decision(spec.premium.model, spec.premium.provider, True, first.id, reason, fired)


def roi_projection(inputs: RoiInputs, cost_reduction: Decimal) -> RoiProjection:
    """ROI over ``inputs.horizon_months`` when monthly spend falls by ``cost_reduction`` (a ratio).

    ``roi = (horizon savings - implementation cost) / implementation cost``;
    ``break_even_month`` is the first month whose cumulative savings reach the implementation
    cost (None when that does not happen within the horizon).
    """
    cost_reduction = Decimal(cost_reduction)
    monthly = inputs.monthly_spend_before_usd * cost_reduction
    horizon = monthly * inputs.horizon_months
    roi = (horizon - inputs.implementation_cost_usd) / inputs.implementation_cost_usd
    break_even: int | None = None
    if monthly > 0:
        month = int((inputs.implementation_cost_usd / monthly).to_integral_value(rounding=ROUND_CEILING))
        month = max(month, 1)
        # Decimal division rounds at 28 digits: settle the boundary with exact products.
        while month * monthly < inputs.implementation_cost_usd:
            month += 1
        while month > 1 and (month - 1) * monthly >= inputs.implementation_cost_usd:
            month -= 1
        break_even = month if month <= inputs.horizon_months else None
    return RoiProjection(monthly, horizon, roi, break_even)


# ---------------------------------------------------------------------------------------------
# Loading: YAML with line numbers -> pydantic (shape) -> cross-checks -> typed Policy
# ---------------------------------------------------------------------------------------------

_ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
_Ratio = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ModelSpec(_Strict):
    provider: Annotated[str, Field(min_length=1)]


class _SignalSpec(_Strict):
    type: Literal["int", "bool"]
    default: StrictBool | StrictInt | None = None
    min: StrictInt | None = None
    max: StrictInt | None = None
    description: str = ""


class _RuleSpec(_Strict):
    signal: str
    op: Literal["==", "!=", ">=", ">", "<=", "<"]
    value: StrictBool | StrictInt


class _TriggerSpec(_Strict):
    id: _ID
    description: str = ""
    rule: _RuleSpec


class _RoleSpec(_Strict):
    primary: str | None = None
    premium: str | None = None
    description: str = ""
    triggers: list[_TriggerSpec] = []


class _KpiSpec(_Strict):
    min: Decimal | None = None
    max: Decimal | None = None
    min_inclusive: StrictBool = True
    max_inclusive: StrictBool = True
    unit: Literal["ratio", "score", "count"]
    description: str = ""


class _RoiSpec(_Strict):
    # money in cents, bounded so that every ROI figure fits the warehouse's DECIMAL(38,12)
    # and Decimal's 28 digits (ROI = savings over up to 1200 months / cost)
    implementation_cost_usd: Annotated[Decimal, Field(ge=Decimal("0.01"), le=10**10,
                                                      decimal_places=2)]
    monthly_spend_before_usd: Annotated[Decimal, Field(ge=0, le=10**10, decimal_places=2)]
    horizon_months: Annotated[StrictInt, Field(ge=1, le=1200)] = 60


class _Lognormal(_Strict):
    median: Annotated[float, Field(gt=0)]
    sigma: Annotated[float, Field(ge=0, le=3)]


class _Calls(_Strict):
    mean: Annotated[float, Field(ge=1)]
    max: Annotated[StrictInt, Field(ge=1)]


class _SimRoleSpec(_Strict):
    task_share: Annotated[Decimal, Field(ge=0)]
    calls_per_task: _Calls
    input_tokens: _Lognormal
    output_tokens: _Lognormal
    cache_read_share: _Ratio = 0.0
    cache_write_ttl: Literal["5m", "1h"] = "5m"
    task_types: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


class _SimModelSpec(_Strict):
    first_token_ms: Annotated[float, Field(ge=0)]
    ms_per_output_token: Annotated[float, Field(ge=0)]
    cache_writes: StrictBool = False
    context_tokens: Annotated[StrictInt, Field(ge=1)] = 200_000
    max_output_tokens: Annotated[StrictInt, Field(ge=1)] = 32_000


class _SimFeedbackSpec(_Strict):
    task_share: _Ratio
    escalated_task_share: _Ratio
    satisfaction: dict[Annotated[int, Field(ge=1, le=5)], Annotated[float, Field(ge=0)]]
    false_positive_rate: _Ratio
    false_negative_rate: _Ratio = 0.0
    review_consistency: _Ratio
    review_roles: list[str] = []


class _Range(_Strict):
    min: Annotated[float, Field(ge=0)]
    max: Annotated[float, Field(ge=0)]


class _Escalated(_Strict):
    calls_factor: Annotated[float, Field(ge=1)] = 1.0
    input_factor: Annotated[float, Field(gt=0)] = 1.0
    output_factor: Annotated[float, Field(gt=0)] = 1.0
    cache_read_share: _Ratio | None = None


class _SimulationSpec(_Strict):
    agents_per_role: Annotated[StrictInt, Field(ge=1)] = 8
    error_rate: _Ratio = 0.0
    think_time_s: _Range = _Range(min=1, max=30)
    roles: dict[str, _SimRoleSpec]
    trigger_rates: dict[str, _Ratio] = {}
    escalated: _Escalated = _Escalated()
    models: dict[str, _SimModelSpec]
    feedback: _SimFeedbackSpec


class _PolicySpec(_Strict):
    version: Annotated[str, Field(min_length=1, max_length=64)]
    models: dict[str, _ModelSpec] = Field(min_length=1)
    default_model: str
    premium_model: str
    baseline_model: str
    signals: dict[str, _SignalSpec] = {}
    roles: dict[str, _RoleSpec] = Field(min_length=1)
    kpi_targets: dict[str, _KpiSpec]
    roi: _RoiSpec
    simulation: _SimulationSpec | None = None


_Path = tuple[str | int, ...]


class _Source:
    """The parsed document plus the line of every key, for messages that name a line.

    Read by :func:`pipeline.config_files.read_yaml`: anchors, aliases, merge keys, duplicate
    keys and deep nesting are refused before anything is built; floats are Decimal from
    their text (money is never a float), plain, finite, <= 15 digits before the point and
    <= 12 after (mart_roi and the dims hold them as DECIMAL(38,12)).
    """

    def __init__(self, path: str) -> None:
        def error(problem: str, line: int | None, field: str | None) -> PolicyError:
            return PolicyError(problem, path=path, line=line, field=field)

        doc = read_yaml(path, what="routing policy", error=error)
        self.path = path
        self.lines: dict[_Path, int] = doc.lines
        self.data: dict[Any, Any] = doc.data

    def line(self, at: Sequence[str | int]) -> int | None:
        """Line of ``at`` or of its nearest ancestor present in the file."""
        at = tuple(str(p) if not isinstance(p, int) else p for p in at)
        while at:
            if at in self.lines:
                return self.lines[at]
            at = at[:-1]
        return self.lines.get((), 1)

    def error(self, message: str, at: Sequence[str | int]) -> PolicyError:
        return PolicyError(message, path=self.path, line=self.line(at), field=_dotted(at) or None)


def _dotted(at: Sequence[str | int]) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_policy(path: str | Path) -> Policy:
    """Load and validate a routing policy; PolicyError names the file, line and field."""
    return _build(_Source(str(path)))


def _build(src: _Source) -> Policy:
    try:
        spec = _PolicySpec.model_validate(src.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise src.error(_pydantic_message(err), _data_path(src.data, err["loc"])) from None

    def model(name: str, at: _Path) -> ModelRef:
        if name not in spec.models:
            raise src.error(f"unknown model {name!r} (models: {', '.join(spec.models)})", at)
        return ModelRef(spec.models[name].provider, name)

    default = model(spec.default_model, ("default_model",))
    premium = model(spec.premium_model, ("premium_model",))
    baseline = model(spec.baseline_model, ("baseline_model",))

    signals: dict[str, Signal] = {}
    for sname, s in spec.signals.items():
        at = ("signals", sname)
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", sname):
            raise src.error("signal names are lower_snake_case", at)
        if s.type == "bool" and (s.min is not None or s.max is not None):
            raise src.error("a bool signal has no min/max", at)
        if s.min is not None and s.max is not None and s.min > s.max:
            raise src.error(f"min {s.min} > max {s.max}", (*at, "min"))
        fallback: int | bool = False if s.type == "bool" else (s.min if s.min is not None else 0)
        default_value = fallback if s.default is None else s.default
        if (s.type == "bool") != isinstance(default_value, bool):
            raise src.error(f"default must be {'a bool' if s.type == 'bool' else 'an integer'}", (*at, "default"))
        signals[sname] = Signal(sname, s.type, default_value, s.description, s.min, s.max)

    roles: dict[str, Role] = {}
    seen_triggers: dict[str, str] = {}
    for rname, r in spec.roles.items():
        at = ("roles", rname)
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", rname):
            raise src.error("role names are 1-64 characters of A-Z a-z 0-9 _ . : -", at)
        if r.primary is None:
            raise src.error(f"role {rname} has no primary model", at)
        primary = model(r.primary, (*at, "primary"))
        role_premium = model(r.premium, (*at, "premium")) if r.premium is not None else None
        if r.triggers and role_premium is None:
            raise src.error(f"role {rname} has triggers but no premium model to escalate to",
                            (*at, "triggers"))
        triggers = []
        for i, t in enumerate(r.triggers):
            tat = (*at, "triggers", i)
            if t.id in seen_triggers:
                raise src.error(f"duplicate trigger id {t.id!r} (first used by role {seen_triggers[t.id]})",
                                (*tat, "id"))
            seen_triggers[t.id] = rname
            sig = signals.get(t.rule.signal)
            if sig is None:
                raise src.error(f"unknown signal {t.rule.signal!r} (declared signals: "
                                f"{', '.join(signals) or 'none'})", (*tat, "rule", "signal"))
            if (sig.type == "bool") != isinstance(t.rule.value, bool):
                raise src.error(f"signal {sig.name} is {sig.type}; the value must be "
                                f"{'true or false' if sig.type == 'bool' else 'an integer'}",
                                (*tat, "rule", "value"))
            if sig.type == "bool" and t.rule.op not in ("==", "!="):
                raise src.error(f"a bool signal compares with == or != only, not {t.rule.op}",
                                (*tat, "rule", "op"))
            triggers.append(Trigger(t.id, t.description, Rule(t.rule.signal, t.rule.op, t.rule.value)))
        roles[rname] = Role(rname, primary, role_premium, triggers, r.description)

    kpis: dict[str, KpiTarget] = {}
    for kid, k in spec.kpi_targets.items():
        at = ("kpi_targets", kid)
        if kid not in KPI_IDS:
            raise src.error(f"unknown KPI {kid!r} (KPIs: {', '.join(KPI_IDS)})", at)
        low, high = {"ratio": (Decimal(0), Decimal(1)), "score": (Decimal(1), Decimal(5)),
                     "count": (Decimal(0), None)}[k.unit]
        for bound in ("min", "max"):
            value = getattr(k, bound)
            if value is None:
                continue
            if not value.is_finite() or value < low or (high is not None and value > high):
                band = f"[{low}, {high}]" if high is not None else f">= {low}"
                raise src.error(f"{value} is out of range for a {k.unit} {band}", (*at, bound))
            if k.unit == "count" and value != value.to_integral_value():
                raise src.error(f"a count target is a whole number, not {value}", (*at, bound))
        if k.min is None and k.max is None:
            raise src.error("a KPI target needs min, max or both", at)
        if k.min is not None and k.max is not None and k.min > k.max:
            raise src.error(f"min {k.min} > max {k.max}", (*at, "min"))
        kpis[kid] = KpiTarget(kid, k.min, k.max, k.unit, k.min_inclusive, k.max_inclusive, k.description)
    missing = [kid for kid in KPI_IDS if kid not in kpis]
    if missing:
        raise src.error(f"missing KPI targets: {', '.join(missing)}", ("kpi_targets",))

    policy = Policy(
        version=spec.version, models={n: ModelRef(m.provider, n) for n, m in spec.models.items()},
        default_model=default, premium_model=premium, baseline_model=baseline, signals=signals,
        roles=roles, kpi_targets=kpis,
        roi=RoiInputs(spec.roi.implementation_cost_usd, spec.roi.monthly_spend_before_usd,
                      spec.roi.horizon_months),
        path=src.path)
    if spec.simulation is not None:
        sim = _simulation(src, spec.simulation, policy)
        policy = dataclasses.replace(policy, simulation=sim)
    return policy


def _simulation(src: _Source, s: _SimulationSpec, policy: Policy) -> SimulationProfile:
    at: _Path = ("simulation",)
    roles: dict[str, SimRole] = {}
    for rname, r in s.roles.items():
        rat = (*at, "roles", rname)
        if rname not in policy.roles:
            raise src.error(f"unknown role {rname!r} (roles: {', '.join(policy.roles)})", rat)
        if r.calls_per_task.mean > r.calls_per_task.max:
            raise src.error("mean > max", (*rat, "calls_per_task", "mean"))
        roles[rname] = SimRole(r.task_share, r.calls_per_task.mean, r.calls_per_task.max,
                               r.input_tokens.median, r.input_tokens.sigma, r.output_tokens.median,
                               r.output_tokens.sigma, r.cache_read_share, r.cache_write_ttl,
                               tuple(r.task_types))
    if sum(r.task_share for r in roles.values()) <= 0:
        raise src.error("the task shares add up to 0", (*at, "roles"))
    by_id = dict((t.id, (rname, t)) for rname, t in policy.triggers())
    for tid in s.trigger_rates:
        if tid not in by_id:
            raise src.error(f"unknown trigger {tid!r}", (*at, "trigger_rates", tid))
    for rname, role in policy.roles.items():
        used = [t.rule.signal for t in role.triggers if t.id in s.trigger_rates]
        if len(used) != len(set(used)):
            raise src.error(f"role {rname}: the simulator needs each rated trigger on its own signal",
                            (*at, "trigger_rates"))
    models: dict[str, SimModel] = {}
    for mname, m in s.models.items():
        if mname not in policy.models:
            raise src.error(f"unknown model {mname!r} (models: {', '.join(policy.models)})",
                            (*at, "models", mname))
        models[mname] = SimModel(m.first_token_ms, m.ms_per_output_token, m.cache_writes,
                                 m.context_tokens, m.max_output_tokens)
    routed = {ref.model for role in policy.roles.values() for ref in (role.primary, role.premium) if ref}
    for mname in sorted(routed - set(models)):
        raise src.error(f"no latency profile for model {mname!r}", (*at, "models"))
    f = s.feedback
    if sum(f.satisfaction.values()) <= 0:
        raise src.error("the satisfaction weights add up to 0", (*at, "feedback", "satisfaction"))
    for rname in f.review_roles:
        if rname not in policy.roles:
            raise src.error(f"unknown role {rname!r}", (*at, "feedback", "review_roles"))
    if s.think_time_s.min > s.think_time_s.max:
        raise src.error("min > max", (*at, "think_time_s", "min"))
    feedback = SimFeedback(f.task_share, f.escalated_task_share, tuple(sorted(f.satisfaction.items())),
                           f.false_positive_rate, f.false_negative_rate, f.review_consistency,
                           tuple(f.review_roles))
    return SimulationProfile(
        roles=roles, trigger_rates=dict(s.trigger_rates), models=models, feedback=feedback,
        agents_per_role=s.agents_per_role, error_rate=s.error_rate,
        think_time_min_s=s.think_time_s.min, think_time_max_s=s.think_time_s.max,
        escalated_calls_factor=s.escalated.calls_factor,
        escalated_input_factor=s.escalated.input_factor,
        escalated_output_factor=s.escalated.output_factor,
        escalated_cache_read_share=s.escalated.cache_read_share)


def _data_path(data: object, loc: Sequence[str | int]) -> _Path:
    """``loc`` of a pydantic error without its union/validator tags (``int``, ``[key]``, ...)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(data, dict):
            key = next((k for k in data if k == part or str(k) == str(part)), None)
            if key is None:
                if isinstance(part, str) and not part.startswith(("function-", "[")) and part not in (
                        "int", "bool", "str", "float", "decimal", "none", "constrained-str"):
                    out.append(part)  # a missing or unknown field: name it
                break
            out.append(str(key))
            data = data[key]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            out.append(part)
            data = data[part]
        else:
            continue
    return tuple(out)


def _pydantic_message(err: Mapping[str, Any]) -> str:
    kind, msg = err.get("type", ""), str(err.get("msg", "invalid"))
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    return msg[0].lower() + msg[1:] if msg else "invalid"


# ---------------------------------------------------------------------------------------------
# CLI verbs
# ---------------------------------------------------------------------------------------------


def run_check_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter policy check [PATH]``: ok line and exit 0, or PolicyError (exit 2)."""
    path = args.path or settings.policy
    policy = load_policy(path)
    print(f"ok: {path} (version {policy.version}, {len(policy.roles)} roles, "
          f"{len(policy.triggers())} triggers)")
    return 0


def run_route_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter policy route --role R --signal k=v ...``: print the decision."""
    policy = load_policy(settings.policy)
    decision = route(policy, args.role, parse_signals(policy, args.signal))
    print(f"model: {decision.model}\nprovider: {decision.provider}\n"
          f"escalated: {str(decision.escalated).lower()}\ntrigger: {decision.trigger or '-'}\n"
          f"reason: {decision.reason}")
    return 0
