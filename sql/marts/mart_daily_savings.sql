-- mart_daily_savings: one row per day of dim_dates (days without calls included).
-- key: event_date. Money over priced calls only (NULL when none); unpriced calls counted.
-- The day rows of mart_kpi_components (which already sums the calls per day), so the
-- report's trend and the KPIs come from one aggregation; savings_pct = cost_reduction_pct.
-- depends on: mart_kpi_components
with

components as (
    select * from mart_kpi_components where period = 'day'
),

final as (
    select
        period_start as event_date,
        calls,
        calls - unpriced_calls as priced_calls,
        unpriced_calls,
        cost_usd,
        baseline_cost_usd,
        savings_usd,
        exact_ratio(savings_usd, baseline_cost_usd) as savings_pct
    from components
)

select * from final
