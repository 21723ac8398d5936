-- mart_daily_savings: one row per day of dim_dates (days without calls included).
-- key: event_date. Money over priced calls only (NULL when none); unpriced calls counted.
with

days as (
    select * from dim_dates
),

calls as (
    select * from mart_daily_call_summary
),

aggregated as (
    select
        event_date,
        sum(calls) as calls,
        coalesce(sum(calls) filter (where is_priced), 0) as priced_calls,
        coalesce(sum(calls) filter (where not is_priced), 0) as unpriced_calls,
        sum(cost_usd) as cost_usd,
        sum(baseline_cost_usd) as baseline_cost_usd,
        sum(savings_usd) as savings_usd
    from calls
    group by event_date
),

final as (
    select
        days.event_date,
        cast(coalesce(aggregated.calls, 0) as bigint) as calls,
        cast(coalesce(aggregated.priced_calls, 0) as bigint) as priced_calls,
        cast(coalesce(aggregated.unpriced_calls, 0) as bigint) as unpriced_calls,
        aggregated.cost_usd,
        aggregated.baseline_cost_usd,
        aggregated.savings_usd,
        exact_ratio(aggregated.savings_usd, aggregated.baseline_cost_usd) as savings_pct
    from days
    left join aggregated
        on aggregated.event_date = days.event_date
)

select * from final
