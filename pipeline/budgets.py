"""Monthly budgets (``schemas/budgets.yaml``): total, per role, per model; exact Decimal USD.

::

    budgets = load_budgets("schemas/budgets.yaml", policy)   # PolicyError names file:line
    budgets.rows()                                            # one per budget, for dim_budgets

The warehouse's ``mart_budget_status`` compares month-to-date spend and its projection with
every budget, day by day; ``modelmeter alerts`` and the report read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictInt

from pipeline.policy import Policy, PolicySource
from pipeline.policy.load import Strict

__all__ = ["Budget", "Budgets", "load_budgets"]

_USD = Annotated[Decimal, Field(gt=0, le=10**12, decimal_places=2)]
_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")]


class _Limit(Strict):
    monthly_usd: _USD


class _ModelLimit(Strict):
    provider: _NAME
    model: _NAME
    monthly_usd: _USD


class _BudgetsSpec(Strict):
    trailing_days: Annotated[StrictInt, Field(ge=1, le=31)] = 7
    total: _Limit | None = None
    roles: dict[str, _Limit] = {}
    models: list[_ModelLimit] = []


@dataclass(frozen=True, slots=True)
class Budget:
    """One monthly limit: ``scope`` total, role or model; ``name`` says which (the subject
    of alerts: ``total``, ``role:architect``, ``model:anthropic/claude-opus-4-1``)."""

    name: str
    scope: Literal["total", "role", "model"]
    monthly_usd: Decimal
    role: str | None = None
    provider: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Budgets:
    path: str
    trailing_days: int
    budgets: tuple[Budget, ...]


def load_budgets(path: str | Path, policy: Policy) -> Budgets:
    """Read and validate the budgets file; a role budget names a role of ``policy``."""
    source = PolicySource(str(path), what="budgets file")
    spec = source.validate(_BudgetsSpec)
    budgets: list[Budget] = []
    if spec.total is not None:
        budgets.append(Budget("total", "total", spec.total.monthly_usd))
    for role, limit in spec.roles.items():
        if role not in policy.roles:
            raise source.error(
                f"unknown role {role!r} (roles of the policy: {', '.join(policy.roles)})",
                ("roles", role),
            )
        budgets.append(Budget(f"role:{role}", "role", limit.monthly_usd, role=role))
    seen: set[tuple[str, str]] = set()
    for i, m in enumerate(spec.models):
        if (m.provider, m.model) in seen:
            raise source.error(f"{m.provider}/{m.model} has two budgets", ("models", i))
        seen.add((m.provider, m.model))
        budgets.append(
            Budget(
                f"model:{m.provider}/{m.model}",
                "model",
                m.monthly_usd,
                provider=m.provider,
                model=m.model,
            )
        )
    return Budgets(str(path), spec.trailing_days, tuple(budgets))
