"""The routing policy: which model each role uses, when it escalates, which targets it must meet.

The policy is data (``schemas/routing_policy.yaml``, format in docs/policy.md)::

    policy = load_policy("schemas/routing_policy.yaml")      # PolicyError names file:line: field
    decision = route(policy, "architect", {"services_affected": 4})
    decision.model, decision.escalated, decision.trigger     # 'claude-opus-4-1', True, 'three_plus_services'
    policy.kpi_targets["default_model_share"].status(Decimal("0.97"))   # 'met'
    roi_projection(policy.roi, Decimal("0.40")).break_even_month

Modules: :mod:`~pipeline.policy.model` (the typed policy and routing, pure),
:mod:`~pipeline.policy.load` (reading and validating the file, errors with file:line) and
:mod:`~pipeline.policy.roi` (the ROI projection). The ``simulation:`` section of the file is
the simulator's traffic profile (:mod:`pipeline.simulate.profile`); the ``modelmeter policy``
verbs are in :mod:`pipeline.cli_policy`.
"""

from pipeline.policy.load import PolicySource, build_policy, load_policy
from pipeline.policy.model import (
    KPI_IDS,
    MISSED_STATUSES,
    UNRESOLVED_ROLE,
    UNRESOLVED_TRIGGER,
    Decision,
    KpiTarget,
    ModelRef,
    Policy,
    Role,
    Rule,
    Signal,
    Trigger,
    parse_signals,
    route,
)
from pipeline.policy.roi import RoiInputs, RoiProjection, roi_projection

__all__ = [
    "KPI_IDS",
    "MISSED_STATUSES",
    "Decision",
    "KpiTarget",
    "ModelRef",
    "Policy",
    "PolicySource",
    "Role",
    "RoiInputs",
    "RoiProjection",
    "Rule",
    "Signal",
    "Trigger",
    "UNRESOLVED_ROLE",
    "UNRESOLVED_TRIGGER",
    "build_policy",
    "load_policy",
    "parse_signals",
    "roi_projection",
    "route",
]
