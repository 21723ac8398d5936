-- daily_cost_by_role: one row per (event_date, role) with calls.
-- key: (event_date, role). Money sums cover priced calls only (NULL when none is priced);
-- unpriced_calls says how many calls are left out. savings_pct = savings / baseline.
-- depends on: mart_daily_call_summary
with

calls as (
    select * from mart_daily_call_summary
),

aggregated as (
    select
        event_date,
        role,
        cast(sum(calls) as bigint) as calls,
        cast(coalesce(sum(calls) filter (where escalated), 0) as bigint) as escalated_calls,
        cast(coalesce(sum(calls) filter (where not is_priced), 0) as bigint) as unpriced_calls,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_tokens) as bigint) as cache_read_tokens,
        cast(sum(cache_write_5m_tokens) as bigint) as cache_write_5m_tokens,
        cast(sum(cache_write_1h_tokens) as bigint) as cache_write_1h_tokens,
        sum(cost_usd) as cost_usd,
        sum(baseline_cost_usd) as baseline_cost_usd,
        sum(savings_usd) as savings_usd
    from calls
    group by event_date, role
),

final as (
    select
        *,
        exact_ratio(savings_usd, baseline_cost_usd) as savings_pct
    from aggregated
)

select * from final
