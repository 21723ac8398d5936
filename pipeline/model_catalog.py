"""The model catalogue (``schemas/models.yaml``): when each model of the price book was
deprecated and retired, and its successor (docs/policy.md, "Model lifecycle").

::

    catalogue = load_model_catalogue("schemas/models.yaml")   # PolicyError names file:line
    life = catalogue.get("anthropic", "claude-opus-4-1")
    life.status_on(dt.date(2026, 12, 3))                        # 'retired'
    lifecycle_problems(policy, catalogue, today)                # policy check's warnings/errors

A model's status is derived from its dates, so the file never goes stale by itself: ``active``
before ``deprecated_on``, ``deprecated`` from it, ``retired`` from ``retired_on`` (requests to
the model fail from that day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from pipeline.policy import Policy, PolicySource
from pipeline.policy.load import Strict
from pipeline.prices import PriceBook

__all__ = [
    "ModelLifecycle",
    "ModelCatalogue",
    "LifecycleProblem",
    "load_model_catalogue",
    "lifecycle_problems",
]

Status = Literal["active", "deprecated", "retired"]
_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")]


class _ModelSpec(Strict):
    provider: _NAME
    model: _NAME
    deprecated_on: dt.date | None = None
    retired_on: dt.date | None = None
    successor: _NAME | None = None


class _CatalogueSpec(Strict):
    as_of: dt.date
    models: list[_ModelSpec]


@dataclass(frozen=True, slots=True)
class ModelLifecycle:
    provider: str
    model: str
    deprecated_on: dt.date | None = None
    retired_on: dt.date | None = None
    successor: str | None = None

    def status_on(self, day: dt.date) -> Status:
        if self.retired_on is not None and day >= self.retired_on:
            return "retired"
        if self.deprecated_on is not None and day >= self.deprecated_on:
            return "deprecated"
        return "active"

    def describe(self, day: dt.date) -> str:
        """``anthropic/claude-opus-4-1 retired on 2026-08-05 (successor: claude-opus-4-8)``."""
        status = self.status_on(day)
        name = f"{self.provider}/{self.model}"
        if status == "retired":
            text = f"{name} retired on {self.retired_on}"
        elif status == "deprecated":
            text = f"{name} deprecated on {self.deprecated_on}"
            if self.retired_on is not None:
                text += f", retires on {self.retired_on}"
        else:
            text = f"{name} is active"
        return text + (f" (successor: {self.successor})" if self.successor else "")


@dataclass(frozen=True, slots=True)
class ModelCatalogue:
    path: str
    as_of: dt.date
    models: dict[tuple[str, str], ModelLifecycle]

    def get(self, provider: str, model: str) -> ModelLifecycle | None:
        return self.models.get((provider, model))


@dataclass(frozen=True, slots=True)
class LifecycleProblem:
    """One finding of :func:`lifecycle_problems`: an ``error`` makes ``policy check`` exit 2."""

    severity: Literal["warning", "error"]
    message: str


def load_model_catalogue(path: str | Path, book: PriceBook | None = None) -> ModelCatalogue:
    """Read and validate the catalogue; with ``book``, every model of the price book must be
    in it (a model added to the prices without its lifecycle is an error)."""
    source = PolicySource(str(path), what="model catalogue")
    spec = source.validate(_CatalogueSpec)
    models: dict[tuple[str, str], ModelLifecycle] = {}
    for i, m in enumerate(spec.models):
        at = ("models", i)
        key = (m.provider, m.model)
        if key in models:
            raise source.error(f"{m.provider}/{m.model} is listed twice", (*at, "model"))
        if m.deprecated_on and m.retired_on and m.retired_on < m.deprecated_on:
            raise source.error(
                f"retired_on {m.retired_on} is before deprecated_on {m.deprecated_on}",
                (*at, "retired_on"),
            )
        models[key] = ModelLifecycle(
            m.provider, m.model, m.deprecated_on, m.retired_on, m.successor
        )
    if book is not None:
        missing = sorted({(p.provider, p.model) for p in book.prices} - models.keys())
        if missing:
            names = ", ".join(f"{p}/{m}" for p, m in missing)
            raise source.error(
                f"models of the price book {book.path} without a lifecycle: {names}", ("models",)
            )
    return ModelCatalogue(str(path), spec.as_of, models)


def lifecycle_problems(
    policy: Policy, catalogue: ModelCatalogue, day: dt.date
) -> list[LifecycleProblem]:
    """What ``policy check`` says about the lifecycle of the policy's models on ``day``: a
    retired default model is an error (every call would fail); a deprecated or retired
    premium or baseline model, or any other model a role routes to, is a warning (a retired
    baseline stays meaningful: it is what "all-Claude" meant when the strategy was decided)."""
    uses: dict[tuple[str, str], list[str]] = {}
    for use, ref in (
        ("default", policy.default_model),
        ("premium", policy.premium_model),
        ("baseline", policy.baseline_model),
    ):
        uses.setdefault((ref.provider, ref.model), []).append(f"{use} model")
    for role in policy.roles.values():
        for use, role_ref in (("primary", role.primary), ("premium", role.premium)):
            if role_ref is not None:
                uses.setdefault((role_ref.provider, role_ref.model), []).append(
                    f"role {role.name}'s {use} model"
                )
    problems = []
    default = (policy.default_model.provider, policy.default_model.model)
    for key, roles in uses.items():
        life = catalogue.get(*key)
        if life is None:
            problems.append(
                LifecycleProblem(
                    "warning",
                    f"{key[0]}/{key[1]} ({', '.join(roles)}) is not in the model catalogue "
                    f"{catalogue.path}: its lifecycle is unknown",
                )
            )
            continue
        status = life.status_on(day)
        if status == "active":
            continue
        severity: Literal["warning", "error"] = "warning"
        consequence = ""
        if status == "retired":
            consequence = "; requests to it fail"
            if key == default:
                severity = "error"
                consequence = "; every call of every role would fail"
        problems.append(
            LifecycleProblem(severity, f"{', '.join(roles)}: {life.describe(day)}{consequence}")
        )
    return problems
