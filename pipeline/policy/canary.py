"""The canary: a candidate policy version routing a share of tasks (docs/policy.md).

::

    canary:
      version: "2026.11.2"          # the candidate's policy_version
      share: 0.20                   # of the tasks, chosen by task id
      start: 2026-11-15             # first UTC day it routes (optional)
      triggers:                     # the candidate's differences: rules that change
        three_plus_services: {value: 4}

    version, decision = route_task(policy, "architect", signals, "task-42", day)

A task is routed by the candidate when its **bucket** (the first 8 bytes of
SHA-256(``<candidate version> NUL <task id>``) as a fraction of 2**64, in [0, 1)) is below
``share`` and its day is on or after ``start``: deterministic, the same task always takes the
same version, and a new candidate version draws a fresh sample. The bucket is compared
exactly (``Decimal``), not through a float.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from pipeline.policy.model import Canary, Decision, Policy, Rule, route

if TYPE_CHECKING:
    from pipeline.policy.load import PolicySource

__all__ = [
    "assign_version",
    "build_canary",
    "canary_bucket",
    "candidate_policy",
    "route_task",
]

_SCALE = Decimal(2**64)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleChange(_Section):
    op: Literal["==", "!=", ">=", ">", "<=", "<"] | None = None
    value: StrictBool | StrictInt


class _CanarySpec(_Section):
    version: Annotated[str, Field(min_length=1, max_length=64)]
    share: Annotated[Decimal, Field(gt=0, le=1)]
    start: dt.date | None = None
    description: str = ""
    triggers: dict[str, _RuleChange] = {}


def build_canary(src: PolicySource, policy: Policy) -> Canary | None:
    """The ``canary:`` section of ``src`` checked against ``policy``; None when absent.

    PolicyError (file:line: field) for an unknown trigger, a value of the wrong type, an
    operator a bool signal does not support, or a candidate version equal to the policy's.
    """
    if src.data.get("canary") is None:
        return None
    spec = src.validate(_CanarySpec, ("canary",))
    if spec.version == policy.version:
        raise src.error(
            f"the candidate version must differ from the policy's version {policy.version!r}",
            ("canary", "version"),
        )
    triggers = {t.id: t for _, t in policy.triggers()}
    rules: dict[str, Rule] = {}
    for tid, change in spec.triggers.items():
        at = ("canary", "triggers", tid)
        if tid not in triggers:
            raise src.error(
                f"unknown trigger {tid!r} (triggers: {', '.join(triggers) or 'none'})", at
            )
        old = triggers[tid].rule
        sig = policy.signals[old.signal]
        if (sig.type == "bool") != isinstance(change.value, bool):
            raise src.error(
                f"signal {sig.name} is {sig.type}; the value must be "
                f"{'true or false' if sig.type == 'bool' else 'an integer'}",
                (*at, "value"),
            )
        op = change.op or old.op
        if sig.type == "bool" and op not in ("==", "!="):
            raise src.error(f"a bool signal compares with == or != only, not {op}", (*at, "op"))
        rules[tid] = Rule(old.signal, op, change.value)
    return Canary(spec.version, spec.share, spec.start, rules, spec.description)


def canary_bucket(version: str, task_id: str) -> Decimal:
    """The task's bucket for candidate ``version``: a fraction in [0, 1), exact."""
    digest = hashlib.sha256(f"{version}\0{task_id}".encode()).digest()
    return Decimal(int.from_bytes(digest[:8], "big")) / _SCALE


def assign_version(policy: Policy, task_id: str, day: dt.date) -> str:
    """The policy version that routes task ``task_id`` started on ``day`` (UTC)."""
    canary = policy.canary
    if canary is None or (canary.start is not None and day < canary.start):
        return policy.version
    if canary_bucket(canary.version, task_id) < canary.share:
        return canary.version
    return policy.version


def candidate_policy(policy: Policy) -> Policy:
    """The policy the canary's candidate routes with: ``policy`` with the candidate's
    version and rules, and no canary of its own (``policy`` itself when it has none)."""
    canary = policy.canary
    if canary is None:
        return policy
    roles = {
        name: dataclasses.replace(
            role,
            triggers=[
                dataclasses.replace(t, rule=canary.rules.get(t.id, t.rule)) for t in role.triggers
            ],
        )
        for name, role in policy.roles.items()
    }
    return dataclasses.replace(policy, version=canary.version, roles=roles, canary=None)


def route_task(
    policy: Policy,
    role: str,
    signals: Mapping[str, object],
    task_id: str,
    day: dt.date,
    *,
    candidate: Policy | None = None,
) -> tuple[str, Decision]:
    """(the version that routes the task, its decision); ``candidate`` may pass a
    precomputed :func:`candidate_policy` (the simulator does)."""
    version = assign_version(policy, task_id, day)
    if version == policy.version:
        return version, route(policy, role, signals)
    return version, route(candidate or candidate_policy(policy), role, signals)
