"""Loading the routing policy: YAML with line numbers -> pydantic (shape) -> cross-checks.

    policy = load_policy("schemas/routing_policy.yaml")      # PolicyError names file:line: field

The file is read by :func:`pipeline.config_files.read_yaml` (no anchors, aliases, merge keys
or duplicate keys; numbers as Decimal from their text). Every problem is a
:class:`~pipeline.PolicyError` naming the file, the line and the dotted field. The
``simulation:`` section is the simulator's (:mod:`pipeline.simulate.profile` reads it from
the same :class:`PolicySource`); here it only has to be a mapping.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from pipeline._exceptions import PolicyError
from pipeline.config_files import read_yaml
from pipeline.policy.canary import build_canary
from pipeline.policy.model import (
    KPI_IDS,
    UNRESOLVED_ROLE,
    UNRESOLVED_TRIGGER,
    KpiTarget,
    ModelRef,
    Policy,
    Role,
    Rule,
    Signal,
    Trigger,
)
from pipeline.policy.roi import RoiInputs

__all__ = ["PolicySource", "Strict", "Ratio", "build_policy", "load_policy"]

_ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
#: a ratio in [0, 1] (also used by the simulator's profile)
Ratio = Annotated[float, Field(ge=0, le=1)]


class Strict(BaseModel):
    """A section of the file: unknown fields are errors (also the simulator's sections)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _ModelSpec(Strict):
    provider: Annotated[str, Field(min_length=1)]


class _SignalSpec(Strict):
    type: Literal["int", "bool"]
    default: StrictBool | StrictInt | None = None
    min: StrictInt | None = None
    max: StrictInt | None = None
    description: str = ""


class _RuleSpec(Strict):
    signal: str
    op: Literal["==", "!=", ">=", ">", "<=", "<"]
    value: StrictBool | StrictInt


class _TriggerSpec(Strict):
    id: _ID
    description: str = ""
    rule: _RuleSpec


class _RoleSpec(Strict):
    primary: str | None = None
    premium: str | None = None
    description: str = ""
    triggers: list[_TriggerSpec] = []


class _KpiSpec(Strict):
    min: Decimal | None = None
    max: Decimal | None = None
    min_inclusive: StrictBool = True
    max_inclusive: StrictBool = True
    unit: Literal["ratio", "score", "count"]
    description: str = ""


class _RoiSpec(Strict):
    # money in cents, bounded so that every ROI figure fits the warehouse's DECIMAL(38,12)
    # and Decimal's 28 digits (ROI = savings over up to 1200 months / cost)
    implementation_cost_usd: Annotated[
        Decimal, Field(ge=Decimal("0.01"), le=10**10, decimal_places=2)
    ]
    monthly_spend_before_usd: Annotated[Decimal, Field(ge=0, le=10**10, decimal_places=2)]
    horizon_months: Annotated[StrictInt, Field(ge=1, le=1200)] = 60


class _UnresolvedSpec(Strict):
    role: _ID = UNRESOLVED_ROLE
    trigger: _ID = UNRESOLVED_TRIGGER


class _PolicySpec(Strict):
    version: Annotated[str, Field(min_length=1, max_length=64)]
    models: dict[str, _ModelSpec] = Field(min_length=1)
    default_model: str
    premium_model: str
    baseline_model: str
    signals: dict[str, _SignalSpec] = {}
    roles: dict[str, _RoleSpec] = Field(min_length=1)
    kpi_targets: dict[str, _KpiSpec]
    roi: _RoiSpec
    unresolved: _UnresolvedSpec = _UnresolvedSpec()
    # the simulator's traffic profile: read by pipeline.simulate.profile, not here
    simulation: dict[str, Any] | None = None
    # a candidate version on a share of tasks: checked by pipeline.policy.canary
    canary: dict[str, Any] | None = None


_Path = tuple[str | int, ...]
_SpecT = TypeVar("_SpecT", bound=BaseModel)


class PolicySource:
    """The parsed document plus the line of every key, for messages that name a line.

    Read by :func:`pipeline.config_files.read_yaml`: anchors, aliases, merge keys, duplicate
    keys and deep nesting are refused before anything is built; floats are Decimal from
    their text (money is never a float), plain, finite, <= 15 digits before the point and
    <= 12 after (mart_roi and the dims hold them as DECIMAL(38,12)).
    """

    def __init__(self, path: str, *, what: str = "routing policy") -> None:
        def error(problem: str, line: int | None, field: str | None) -> PolicyError:
            return PolicyError(problem, path=path, line=line, field=field)

        doc = read_yaml(path, what=what, error=error)
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
        """PolicyError naming the file, the line of ``at`` and ``at`` as a dotted field."""
        return PolicyError(message, path=self.path, line=self.line(at), field=_dotted(at) or None)

    def validate(self, spec: type[_SpecT], at: Sequence[str | int] = ()) -> _SpecT:
        """The section ``at`` (default: the whole file) validated by the pydantic ``spec``.

        The first problem is raised as a PolicyError naming its line and field.
        """
        data: Any = self.data
        for part in at:
            data = data[part]
        try:
            return spec.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise self.error(_pydantic_message(err), (*at, *_data_path(data, err["loc"]))) from None


def _dotted(at: Sequence[str | int]) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_policy(path: str | Path) -> Policy:
    """Load and validate a routing policy; PolicyError names the file, line and field."""
    return build_policy(PolicySource(str(path)))


def build_policy(src: PolicySource) -> Policy:
    """The typed policy of a parsed file; PolicyError names the line and field of a problem."""
    spec = src.validate(_PolicySpec)

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
            raise src.error(
                f"default must be {'a bool' if s.type == 'bool' else 'an integer'}",
                (*at, "default"),
            )
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
            raise src.error(
                f"role {rname} has triggers but no premium model to escalate to", (*at, "triggers")
            )
        triggers = []
        for i, t in enumerate(r.triggers):
            tat = (*at, "triggers", i)
            if t.id in seen_triggers:
                raise src.error(
                    f"duplicate trigger id {t.id!r} (first used by role {seen_triggers[t.id]})",
                    (*tat, "id"),
                )
            seen_triggers[t.id] = rname
            sig = signals.get(t.rule.signal)
            if sig is None:
                raise src.error(
                    f"unknown signal {t.rule.signal!r} (declared signals: "
                    f"{', '.join(signals) or 'none'})",
                    (*tat, "rule", "signal"),
                )
            if (sig.type == "bool") != isinstance(t.rule.value, bool):
                raise src.error(
                    f"signal {sig.name} is {sig.type}; the value must be "
                    f"{'true or false' if sig.type == 'bool' else 'an integer'}",
                    (*tat, "rule", "value"),
                )
            if sig.type == "bool" and t.rule.op not in ("==", "!="):
                raise src.error(
                    f"a bool signal compares with == or != only, not {t.rule.op}",
                    (*tat, "rule", "op"),
                )
            triggers.append(
                Trigger(t.id, t.description, Rule(t.rule.signal, t.rule.op, t.rule.value))
            )
        roles[rname] = Role(rname, primary, role_premium, triggers, r.description)

    kpis: dict[str, KpiTarget] = {}
    for kid, k in spec.kpi_targets.items():
        at = ("kpi_targets", kid)
        if kid not in KPI_IDS:
            raise src.error(f"unknown KPI {kid!r} (KPIs: {', '.join(KPI_IDS)})", at)
        low, high = {
            "ratio": (Decimal(0), Decimal(1)),
            "score": (Decimal(1), Decimal(5)),
            "count": (Decimal(0), None),
        }[k.unit]
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
        kpis[kid] = KpiTarget(
            kid, k.min, k.max, k.unit, k.min_inclusive, k.max_inclusive, k.description
        )
    unresolved = spec.unresolved
    if unresolved.role in roles:
        raise src.error(
            f"{unresolved.role!r} is a role of this policy; the unresolved role must not be one",
            ("unresolved", "role"),
        )
    if unresolved.trigger in seen_triggers:
        raise src.error(
            f"{unresolved.trigger!r} is a trigger of role {seen_triggers[unresolved.trigger]};"
            " the unresolved trigger must not be one",
            ("unresolved", "trigger"),
        )
    missing = [kid for kid in KPI_IDS if kid not in kpis]
    if missing:
        raise src.error(f"missing KPI targets: {', '.join(missing)}", ("kpi_targets",))

    policy = Policy(
        version=spec.version,
        models={n: ModelRef(m.provider, n) for n, m in spec.models.items()},
        default_model=default,
        premium_model=premium,
        baseline_model=baseline,
        signals=signals,
        roles=roles,
        kpi_targets=kpis,
        roi=RoiInputs(
            spec.roi.implementation_cost_usd,
            spec.roi.monthly_spend_before_usd,
            spec.roi.horizon_months,
        ),
        unresolved_role=unresolved.role,
        unresolved_trigger=unresolved.trigger,
        path=src.path,
    )
    canary = build_canary(src, policy)
    return policy if canary is None else dataclasses.replace(policy, canary=canary)


def _data_path(data: object, loc: Sequence[str | int]) -> _Path:
    """``loc`` of a pydantic error without its union/validator tags (``int``, ``[key]``, ...)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(data, dict):
            key = next((k for k in data if k == part or str(k) == str(part)), None)
            if key is None:
                if (
                    isinstance(part, str)
                    and not part.startswith(("function-", "["))
                    and part
                    not in ("int", "bool", "str", "float", "decimal", "none", "constrained-str")
                ):
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
