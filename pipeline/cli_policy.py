"""The ``modelmeter policy`` verbs: ``check`` a policy file, show a routing decision (``route``).

``policy check`` validates the whole file: the routing policy (:mod:`pipeline.policy`) and
the simulator's traffic profile in its ``simulation:`` section
(:mod:`pipeline.simulate.profile`), which routing itself never reads.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.policy import PolicySource, build_policy, load_policy, parse_signals, route
from pipeline.simulate.profile import read_profile

__all__ = ["run_check_cli", "run_route_cli"]


def run_check_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter policy check [PATH]``: ok line and exit 0, or PolicyError (exit 2)."""
    path = args.path or settings.policy
    source = PolicySource(str(path))
    policy = build_policy(source)
    read_profile(source, policy)
    print(
        f"ok: {path} (version {policy.version}, {len(policy.roles)} roles, "
        f"{len(policy.triggers())} triggers)"
    )
    return 0


def run_route_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter policy route --role R --signal k=v ...``: print the decision."""
    policy = load_policy(settings.policy)
    decision = route(policy, args.role, parse_signals(policy, args.signal))
    print(
        f"model: {decision.model}\nprovider: {decision.provider}\n"
        f"escalated: {str(decision.escalated).lower()}\ntrigger: {decision.trigger or '-'}\n"
        f"reason: {decision.reason}"
    )
    return 0
