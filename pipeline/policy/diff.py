"""What changed between two routing policies (``modelmeter policy diff A B``).

Both files are loaded and validated first, so the comparison is of meaning, not of text
(comments, key order and number spelling do not count): each policy is flattened into
dotted ``field: value`` lines (:func:`policy_fields`) and :func:`diff_policies` lists the
fields that were removed (``-``), added (``+``) or changed (``~ field: old -> new``), in
the order of the first policy then the second. The ``simulation:`` section is not part of
the routing policy and is not compared.
"""

from __future__ import annotations

from pipeline.policy.model import Policy

__all__ = ["diff_policies", "policy_fields"]


def policy_fields(policy: Policy) -> dict[str, str]:
    """The policy as ``{dotted field: value text}``, in file order."""
    out: dict[str, str] = {
        "version": policy.version,
        "default_model": str(policy.default_model),
        "premium_model": str(policy.premium_model),
        "baseline_model": str(policy.baseline_model),
    }
    for name, ref in policy.models.items():
        out[f"models.{name}.provider"] = ref.provider
    for name, sig in policy.signals.items():
        bounds = (
            f" [{sig.min if sig.min is not None else ''}, {sig.max if sig.max is not None else ''}]"
        )
        out[f"signals.{name}"] = f"{sig.type} default {str(sig.default).lower()}" + (
            bounds if sig.type == "int" else ""
        )
    for name, role in policy.roles.items():
        out[f"roles.{name}.primary"] = str(role.primary)
        out[f"roles.{name}.premium"] = str(role.premium) if role.premium else "-"
        out[f"roles.{name}.trigger_order"] = ", ".join(t.id for t in role.triggers) or "-"
        for t in role.triggers:
            out[f"roles.{name}.triggers.{t.id}.rule"] = str(t.rule)
    for kid, k in policy.kpi_targets.items():
        out[f"kpi_targets.{kid}"] = f"{k} ({k.unit})"
    out["roi.implementation_cost_usd"] = str(policy.roi.implementation_cost_usd)
    out["roi.monthly_spend_before_usd"] = str(policy.roi.monthly_spend_before_usd)
    out["roi.horizon_months"] = str(policy.roi.horizon_months)
    out["unresolved.role"] = policy.unresolved_role
    out["unresolved.trigger"] = policy.unresolved_trigger
    canary = policy.canary
    if canary is not None:
        out["canary.version"] = canary.version
        out["canary.share"] = str(canary.share)
        out["canary.start"] = canary.start.isoformat() if canary.start else "-"
        for tid, rule in canary.rules.items():
            out[f"canary.triggers.{tid}.rule"] = str(rule)
    return out


def diff_policies(a: Policy, b: Policy) -> list[str]:
    """One line per difference between ``a`` and ``b``: ``- f: v``, ``+ f: v``,
    ``~ f: old -> new``; empty when they route, target and project the same."""
    fa, fb = policy_fields(a), policy_fields(b)
    lines = []
    for key, old in fa.items():
        if key not in fb:
            lines.append(f"- {key}: {old}")
        elif fb[key] != old:
            lines.append(f"~ {key}: {old} -> {fb[key]}")
    lines.extend(f"+ {key}: {new}" for key, new in fb.items() if key not in fa)
    return lines
