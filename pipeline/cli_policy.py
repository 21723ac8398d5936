"""The ``modelmeter policy`` verbs: ``check`` a policy file, show a routing decision (``route``),
show what changed between two policy files (``diff``).

``policy check`` validates the whole file: the routing policy (:mod:`pipeline.policy`) and
the simulator's traffic profile in its ``simulation:`` section
(:mod:`pipeline.simulate.profile`), which routing itself never reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from pipeline._exceptions import ConfigError, PolicyError
from pipeline.model_catalog import lifecycle_problems, load_model_catalogue
from pipeline.policy import PolicySource, build_policy, load_policy, parse_signals, route
from pipeline.policy.canary import route_task
from pipeline.policy.diff import diff_policies
from pipeline.prices import load_price_book
from pipeline.simulate.profile import read_profile

__all__ = ["run_check_cli", "run_diff_cli", "run_route_cli"]


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
    """``modelmeter policy route --role R --signal k=v ... [--task-id T] [--date D]``: print
    the decision and the policy version that made it (a canary assigns it by task id)."""
    policy = load_policy(settings.policy)
    signals = parse_signals(policy, args.signal)
    task_id = getattr(args, "task_id", None)
    version, note = policy.version, ""
    if policy.canary is not None and task_id is None:
        note = f" (canary {policy.canary.version} not applied: no --task-id)"
    if task_id is not None:
        day = _route_day(getattr(args, "date", None))
        version, decision = route_task(policy, args.role, signals, task_id, day)
        if policy.canary is not None:
            role = "candidate" if version == policy.canary.version else "baseline"
            note = f" ({role}; canary {policy.canary.version} on {policy.canary.share} of tasks)"
    else:
        decision = route(policy, args.role, signals)
    print(
        f"version: {version}{note}\n"
        f"model: {decision.model}\nprovider: {decision.provider}\n"
        f"escalated: {str(decision.escalated).lower()}\ntrigger: {decision.trigger or '-'}\n"
        f"reason: {decision.reason}"
    )
    return 0


def _route_day(text: str | None) -> dt.date:
    if not text:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--date: expected YYYY-MM-DD, got {text!r}") from None


def run_diff_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter policy diff A B``: one line per changed field (both files validated);
    ``no differences`` when they route, target and project the same. Exit 0 either way."""
    a, b = load_policy(args.path_a), load_policy(args.path_b)
    lines = diff_policies(a, b)
    print(f"--- {args.path_a} (version {a.version})\n+++ {args.path_b} (version {b.version})")
    print("\n".join(lines) if lines else "no differences")
    return 0
