-- kpi_daily: one row per (event_date, kpi) over the days of dim_dates.
-- key: (event_date, kpi). Definitions: mart_kpi_actuals.sql and docs/finance.md.
-- depends on: mart_kpi_actuals
with

actuals as (
    select * from mart_kpi_actuals where period = 'day'
),

final as (
    select
        period_start as event_date,
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
