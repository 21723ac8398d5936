-- mart_daily_savings: one row per day of dim_dates (days without calls included).
-- key: event_date. Money over priced calls only (NULL when none); unpriced calls counted.
with

days as (
    select * from dim_dates
),

calls as (
    select * from fct_llm_calls
),

aggregated as (
    select
        event_date,
        count(*) as calls,
        count(*) filter (where is_priced) as priced_calls,
        count(*) filter (where not is_priced) as unpriced_calls,
        sum(cost_usd) as cost_usd,
        sum(baseline_cost_usd) as baseline_cost_usd,
        sum(savings_usd) as savings_usd
    from calls
    group by event_date
),

final as (
    select
        days.event_date,
        coalesce(aggregated.calls, 0) as calls,
        coalesce(aggregated.priced_calls, 0) as priced_calls,
        coalesce(aggregated.unpriced_calls, 0) as unpriced_calls,
        aggregated.cost_usd,
        aggregated.baseline_cost_usd,
        aggregated.savings_usd,
        exact_ratio(aggregated.savings_usd, aggregated.baseline_cost_usd) as savings_pct
    from days
    left join aggregated
        on aggregated.event_date = days.event_date
)

select * from final
