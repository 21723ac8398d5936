-- kpi_monthly: one row per (month, kpi); month is the first day of the calendar month (UTC).
-- key: (month, kpi). Definitions: mart_kpi_actuals.sql and docs/finance.md.
-- depends on: mart_kpi_actuals
with

actuals as (
    select * from mart_kpi_actuals where period = 'month'
),

final as (
    select
        period_start as month,
        kpi,
        actual,
        target_min,
        target_max,
        min_inclusive,
        max_inclusive,
        unit,
        status
    from actuals
)

select * from final
