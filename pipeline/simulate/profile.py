"""The simulator's traffic profile: the ``simulation:`` section of the routing policy file.

    policy, profile = load_profile("schemas/routing_policy.yaml")
    profile.roles["architect"].calls_mean, profile.trigger_rates["three_plus_services"]

The section describes the shape of ``modelmeter simulate``'s traffic (docs/policy.md, "The
simulator"): role mix, calls per task, token sizes, trigger rates, latencies, feedback.
Routing, the warehouse and the reports never read it; it is read from the same parsed file
as the policy (:class:`pipeline.policy.PolicySource`), so its errors name file:line: field
too, and checked against the policy (roles, triggers and models must exist).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt

from pipeline._exceptions import ConfigError
from pipeline.policy import Policy, PolicySource, build_policy
from pipeline.policy.load import Ratio, Strict

__all__ = [
    "SimFeedback",
    "SimModel",
    "SimRole",
    "SimulationProfile",
    "load_profile",
    "read_profile",
]


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


class _Lognormal(Strict):
    median: Annotated[float, Field(gt=0)]
    sigma: Annotated[float, Field(ge=0, le=3)]


class _Calls(Strict):
    mean: Annotated[float, Field(ge=1)]
    max: Annotated[StrictInt, Field(ge=1)]


class _SimRoleSpec(Strict):
    task_share: Annotated[Decimal, Field(ge=0)]
    calls_per_task: _Calls
    input_tokens: _Lognormal
    output_tokens: _Lognormal
    cache_read_share: Ratio = 0.0
    cache_write_ttl: Literal["5m", "1h"] = "5m"
    task_types: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


class _SimModelSpec(Strict):
    first_token_ms: Annotated[float, Field(ge=0)]
    ms_per_output_token: Annotated[float, Field(ge=0)]
    cache_writes: StrictBool = False
    context_tokens: Annotated[StrictInt, Field(ge=1)] = 200_000
    max_output_tokens: Annotated[StrictInt, Field(ge=1)] = 32_000


class _SimFeedbackSpec(Strict):
    task_share: Ratio
    escalated_task_share: Ratio
    satisfaction: dict[Annotated[int, Field(ge=1, le=5)], Annotated[float, Field(ge=0)]]
    false_positive_rate: Ratio
    false_negative_rate: Ratio = 0.0
    review_consistency: Ratio
    review_roles: list[str] = []


class _Range(Strict):
    min: Annotated[float, Field(ge=0)]
    max: Annotated[float, Field(ge=0)]


class _Escalated(Strict):
    calls_factor: Annotated[float, Field(ge=1)] = 1.0
    input_factor: Annotated[float, Field(gt=0)] = 1.0
    output_factor: Annotated[float, Field(gt=0)] = 1.0
    cache_read_share: Ratio | None = None


class _SimulationSpec(Strict):
    agents_per_role: Annotated[StrictInt, Field(ge=1)] = 8
    error_rate: Ratio = 0.0
    think_time_s: _Range = _Range(min=1, max=30)
    roles: dict[str, _SimRoleSpec]
    trigger_rates: dict[str, Ratio] = {}
    escalated: _Escalated = _Escalated()
    models: dict[str, _SimModelSpec]
    feedback: _SimFeedbackSpec


def load_profile(path: str | Path) -> tuple[Policy, SimulationProfile]:
    """The policy at ``path`` and its traffic profile, read from one parse of the file.

    PolicyError for a problem in the file; ConfigError when it has no ``simulation:`` section.
    """
    src = PolicySource(str(path))
    policy = build_policy(src)
    profile = read_profile(src, policy)
    if profile is None:
        raise ConfigError(f"{path} has no simulation: section (docs/policy.md describes it)")
    return policy, profile


def read_profile(src: PolicySource, policy: Policy) -> SimulationProfile | None:
    """The ``simulation:`` section of ``src`` (None without one), checked against ``policy``.

    PolicyError names the file, line and field of a problem, like the policy's own errors.
    """
    if src.data.get("simulation") is None:
        return None
    at: tuple[str | int, ...] = ("simulation",)
    s = src.validate(_SimulationSpec, at)
    roles: dict[str, SimRole] = {}
    for rname, r in s.roles.items():
        rat = (*at, "roles", rname)
        if rname not in policy.roles:
            raise src.error(f"unknown role {rname!r} (roles: {', '.join(policy.roles)})", rat)
        if r.calls_per_task.mean > r.calls_per_task.max:
            raise src.error("mean > max", (*rat, "calls_per_task", "mean"))
        roles[rname] = SimRole(
            r.task_share,
            r.calls_per_task.mean,
            r.calls_per_task.max,
            r.input_tokens.median,
            r.input_tokens.sigma,
            r.output_tokens.median,
            r.output_tokens.sigma,
            r.cache_read_share,
            r.cache_write_ttl,
            tuple(r.task_types),
        )
    if sum(r.task_share for r in roles.values()) <= 0:
        raise src.error("the task shares add up to 0", (*at, "roles"))
    by_id = dict((t.id, (rname, t)) for rname, t in policy.triggers())
    for tid in s.trigger_rates:
        if tid not in by_id:
            raise src.error(f"unknown trigger {tid!r}", (*at, "trigger_rates", tid))
    for rname, role in policy.roles.items():
        used = [t.rule.signal for t in role.triggers if t.id in s.trigger_rates]
        if len(used) != len(set(used)):
            raise src.error(
                f"role {rname}: the simulator needs each rated trigger on its own signal",
                (*at, "trigger_rates"),
            )
    models: dict[str, SimModel] = {}
    for mname, m in s.models.items():
        if mname not in policy.models:
            raise src.error(
                f"unknown model {mname!r} (models: {', '.join(policy.models)})",
                (*at, "models", mname),
            )
        models[mname] = SimModel(
            m.first_token_ms,
            m.ms_per_output_token,
            m.cache_writes,
            m.context_tokens,
            m.max_output_tokens,
        )
    routed = {
        ref.model for role in policy.roles.values() for ref in (role.primary, role.premium) if ref
    }
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
    feedback = SimFeedback(
        f.task_share,
        f.escalated_task_share,
        tuple(sorted(f.satisfaction.items())),
        f.false_positive_rate,
        f.false_negative_rate,
        f.review_consistency,
        tuple(f.review_roles),
    )
    return SimulationProfile(
        roles=roles,
        trigger_rates=dict(s.trigger_rates),
        models=models,
        feedback=feedback,
        agents_per_role=s.agents_per_role,
        error_rate=s.error_rate,
        think_time_min_s=s.think_time_s.min,
        think_time_max_s=s.think_time_s.max,
        escalated_calls_factor=s.escalated.calls_factor,
        escalated_input_factor=s.escalated.input_factor,
        escalated_output_factor=s.escalated.output_factor,
        escalated_cache_read_share=s.escalated.cache_read_share,
    )
