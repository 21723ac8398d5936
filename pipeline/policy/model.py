"""The routing policy as typed values, and routing over it (docs/policy.md)::

    decision = route(policy, "architect", {"services_affected": 4})
    decision.model, decision.escalated, decision.trigger     # 'claude-opus-4-1', True, 'three_plus_services'
    policy.kpi_targets["default_model_share"].status(Decimal("0.97"))   # 'met'

Trigger rules are one comparison of a declared task signal with a constant
(``services_affected >= 3``); nothing is evaluated as code. Money and ratios are
:class:`decimal.Decimal`. :mod:`pipeline.policy.load` builds a :class:`Policy` from the YAML
file; everything here is pure.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pipeline._exceptions import ConfigError
from pipeline.policy.roi import RoiInputs

__all__ = [
    "KPI_IDS",
    "KpiStatus",
    "MISSED_STATUSES",
    "Decision",
    "KpiTarget",
    "ModelRef",
    "Policy",
    "Role",
    "Rule",
    "Signal",
    "Trigger",
    "UNRESOLVED_ROLE",
    "UNRESOLVED_TRIGGER",
    "parse_signals",
    "route",
]

#: a KPI's status against its target: every value but ``met`` and ``no_data`` is a miss
KpiStatus = Literal["met", "missed", "below_range", "above_range", "no_data"]
MISSED_STATUSES = frozenset({"missed", "below_range", "above_range"})

#: the ``unresolved`` ids of a policy file that does not set them (schemas/routing_policy.yaml)
UNRESOLVED_ROLE = "unassigned"
UNRESOLVED_TRIGGER = "unattributed"

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
                raise ConfigError(
                    f"signal {self.name}: expected an integer, got {value!r}"
                ) from None
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"signal {self.name}: expected a bool, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"signal {self.name}: expected an integer, got {value!r}")
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
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

    def status(self, actual: Decimal | int | None) -> KpiStatus:
        """``met`` when ``actual`` is inside the band; outside a range target (both bounds)
        ``below_range`` or ``above_range``; outside a one-sided target ``missed``; ``no_data``
        for None. The SQL macro ``kpi_status`` (sql/_macros.sql) says the same."""
        if actual is None:
            return "no_data"
        ranged = self.min is not None and self.max is not None
        if self.min is not None and (
            actual < self.min or (actual == self.min and not self.min_inclusive)
        ):
            return "below_range" if ranged else "missed"
        if self.max is not None and (
            actual > self.max or (actual == self.max and not self.max_inclusive)
        ):
            return "above_range" if ranged else "missed"
        return "met"

    def __str__(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>=' if self.min_inclusive else '>'} {self.min}")
        if self.max is not None:
            parts.append(f"{'<=' if self.max_inclusive else '<'} {self.max}")
        return " and ".join(parts) or "any"


@dataclass(frozen=True, slots=True)
class Canary:
    """A candidate policy version routing a share of tasks (docs/policy.md, "Canary").

    ``rules`` are the candidate's differences: trigger id -> the rule it uses instead.
    Which tasks it routes: :func:`pipeline.policy.canary.assign_version`.
    """

    version: str
    share: Decimal  # ratio in (0, 1]
    start: dt.date | None = None  # first UTC day it routes tasks; None = from the start
    rules: dict[str, Rule] = field(default_factory=dict)
    description: str = ""


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
    #: what a collector records when its source does not tell (docs/sources.md): the role of a
    #: call no mapping resolves, the trigger of an escalation whose source does not record it
    unresolved_role: str = UNRESOLVED_ROLE
    unresolved_trigger: str = UNRESOLVED_TRIGGER
    path: str | None = None
    #: a candidate version on a share of tasks (``canary:`` section); None = no canary
    canary: Canary | None = None

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
    reason = (
        f"trigger {first.id} fired ({first.rule}; {first.rule.signal}="
        f"{str(values[first.rule.signal]).lower()}): premium {spec.premium}"
    )
    if len(fired) > 1:
        reason += f"; also fired: {', '.join(fired[1:])}"
    return Decision(spec.premium.model, spec.premium.provider, True, first.id, reason, fired)
