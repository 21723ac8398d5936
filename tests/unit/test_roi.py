"""ROI projection and break-even month, checked against hand arithmetic."""

from __future__ import annotations

from decimal import Decimal

from pipeline.policy import RoiInputs, roi_projection


def test_roi_and_break_even_by_hand():
    """$30,000/month before, 40 % cheaper -> $12,000/month saved; $45,000 to implement.

    60 months save 720,000; ROI = (720,000 - 45,000) / 45,000 = 15; cumulative savings are
    12k, 24k, 36k, 48k -> month 4 is the first to reach 45k.
    """
    p = roi_projection(RoiInputs(Decimal("45000"), Decimal("30000"), 60), Decimal("0.40"))
    assert p.monthly_savings_usd == Decimal("12000")
    assert p.horizon_savings_usd == Decimal("720000")
    assert p.roi == Decimal("15")
    assert p.break_even_month == 4
    assert all(
        isinstance(v, Decimal) for v in (p.monthly_savings_usd, p.horizon_savings_usd, p.roi)
    )


def test_break_even_exactly_on_a_month_boundary():
    """Cumulative savings equal to the cost count as break-even (>=): 3 x 10,000 = 30,000."""
    p = roi_projection(RoiInputs(Decimal("30000"), Decimal("25000"), 60), Decimal("0.4"))
    assert p.monthly_savings_usd == Decimal("10000")
    assert p.break_even_month == 3


def test_break_even_with_a_repeating_quotient():
    """10,000 / 3,000 = 3.33...: month 4 (3 months save only 9,000)."""
    p = roi_projection(RoiInputs(Decimal("10000"), Decimal("7500"), 12), Decimal("0.4"))
    assert p.monthly_savings_usd == Decimal("3000")
    assert p.break_even_month == 4
    assert p.horizon_savings_usd == Decimal("36000")
    assert p.roi == Decimal("2.6")  # (36,000 - 10,000) / 10,000


def test_no_break_even_within_the_horizon():
    """1,000/month against 100,000 over 60 months: 60,000 saved, ROI -0.4, never breaks even."""
    p = roi_projection(RoiInputs(Decimal("100000"), Decimal("2500"), 60), Decimal("0.4"))
    assert p.break_even_month is None
    assert p.roi == Decimal("-0.4")


def test_break_even_in_the_last_month_of_the_horizon():
    p = roi_projection(RoiInputs(Decimal("60000"), Decimal("2500"), 60), Decimal("0.4"))
    assert p.break_even_month == 60 and p.roi == Decimal("0")


def test_no_or_negative_savings_never_break_even():
    assert (
        roi_projection(RoiInputs(Decimal("1000"), Decimal("5000")), Decimal("0")).break_even_month
        is None
    )
    p = roi_projection(RoiInputs(Decimal("1000"), Decimal("5000")), Decimal("-0.1"))
    assert p.break_even_month is None and p.monthly_savings_usd == Decimal("-500.0")
    assert p.roi == Decimal("-31")  # (60 x -500 - 1000) / 1000


def test_cost_reduction_is_exact_decimal_not_float():
    """0.35 x 30,000 = 10,500 exactly; the horizon defaults to 60 months."""
    p = roi_projection(RoiInputs(Decimal("45000.00"), Decimal("30000.00")), Decimal("0.35"))
    assert p.monthly_savings_usd == Decimal("10500.0000")
    assert p.horizon_savings_usd == Decimal("630000")
    assert p.break_even_month == 5  # 4 x 10,500 = 42,000 < 45,000 <= 52,500


def test_the_largest_roi_the_policy_allows_fits_the_warehouse_scale():
    """The policy's bounds (cost >= $0.01, spend <= $10bn a month, 1200 months) keep every
    figure within DECIMAL(38,12); rounding it to 12 decimals must not overflow Decimal."""
    p = roi_projection(RoiInputs(Decimal("0.01"), Decimal(10**10), 1200), Decimal(1))
    scaled = p.at_money_scale()
    assert scaled.roi == Decimal("1199999999999999.000000000000")
    assert len(scaled.roi.as_tuple().digits) <= 38
