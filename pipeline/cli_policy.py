"""The ``modelmeter policy`` verbs: ``check`` a policy file, show a routing decision (``route``).

``policy check`` validates the whole file: the routing policy (:mod:`pipeline.policy`) and
the simulator's traffic profile in its ``simulation:`` section
(:mod:`pipeline.simulate.profile`), which routing itself never reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from pipeline._exceptions import PolicyError
from pipeline.model_catalog import lifecycle_problems, load_model_catalogue
from pipeline.policy import PolicySource, build_policy, load_policy, parse_signals, route
from pipeline.prices import load_price_book
from pipeline.simulate.profile import read_profile

__all__ = ["run_check_cli", "run_route_cli"]


def run_check_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter policy check [PATH]``: ok line and exit 0 (lifecycle warnings on stderr),
    or PolicyError (exit 2): the file is invalid, or its default model is retired."""
    path = args.path or settings.policy
    source = PolicySource(str(path))
    policy = build_policy(source)
    read_profile(source, policy)
    catalogue = load_model_catalogue(settings.models, load_price_book(settings.prices))
    today = dt.datetime.now(dt.UTC).date()
    problems = lifecycle_problems(policy, catalogue, today)
    for problem in problems:
        if problem.severity == "warning":
            print(f"warning: {problem.message}", file=sys.stderr)
    errors = [p.message for p in problems if p.severity == "error"]
    if errors:
        raise PolicyError(
            "; ".join(errors),
            path=str(path),
            line=source.line(("default_model",)),
            field="default_model",
        )
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
