"""The ROI projection of the routing strategy (docs/policy.md, "ROI")::

    roi_projection(policy.roi, Decimal("0.40"))     # RoiProjection(12000, 720000, 15, 4)

Pure Decimal arithmetic: the warehouse's ``mart_roi`` and the report both call it, so the
same reduction always projects to the same figures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext

__all__ = ["RoiInputs", "RoiProjection", "roi_projection"]

_MONEY_QUANTUM = Decimal("1E-12")


@dataclass(frozen=True, slots=True)
class RoiInputs:
    """Inputs of the ROI projection (USD)."""

    implementation_cost_usd: Decimal
    monthly_spend_before_usd: Decimal
    horizon_months: int = 60


@dataclass(frozen=True, slots=True)
class RoiProjection:
    """ROI of the strategy over the horizon at a given monthly cost reduction."""

    monthly_savings_usd: Decimal
    horizon_savings_usd: Decimal
    roi: Decimal
    break_even_month: int | None

    def at_money_scale(self) -> RoiProjection:
        """The amounts rounded half-even to 12 decimals, as DECIMAL(38,12) (mart_roi) holds them."""

        def scale(value: Decimal) -> Decimal:
            with localcontext(prec=60):  # 26 + 12 digits need more than the default 28
                return value.quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)

        return dataclasses.replace(
            self,
            monthly_savings_usd=scale(self.monthly_savings_usd),
            horizon_savings_usd=scale(self.horizon_savings_usd),
            roi=scale(self.roi),
        )


def roi_projection(inputs: RoiInputs, cost_reduction: Decimal) -> RoiProjection:
    """ROI over ``inputs.horizon_months`` when monthly spend falls by ``cost_reduction`` (a ratio).

    ``roi = (horizon savings - implementation cost) / implementation cost``;
    ``break_even_month`` is the first month whose cumulative savings reach the implementation
    cost (None when that does not happen within the horizon).
    """
    cost_reduction = Decimal(cost_reduction)
    monthly = inputs.monthly_spend_before_usd * cost_reduction
    horizon = monthly * inputs.horizon_months
    roi = (horizon - inputs.implementation_cost_usd) / inputs.implementation_cost_usd
    break_even: int | None = None
    if monthly > 0:
        month = int(
            (inputs.implementation_cost_usd / monthly).to_integral_value(rounding=ROUND_CEILING)
        )
        month = max(month, 1)
        # Decimal division rounds at 28 digits: settle the boundary with exact products.
        while month * monthly < inputs.implementation_cost_usd:
            month += 1
        while month > 1 and (month - 1) * monthly >= inputs.implementation_cost_usd:
            month -= 1
        break_even = month if month <= inputs.horizon_months else None
    return RoiProjection(monthly, horizon, roi, break_even)
