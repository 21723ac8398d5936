-- daily_cost_by_model: one row per (event_date, provider, model) with calls.
-- key: (event_date, provider, model). share_of_calls = calls / all calls of the day;
-- share_of_cost = cost / priced cost of the day (NULL for an unpriced model).
-- depends on: mart_daily_call_summary
with

calls as (
    select * from mart_daily_call_summary
),

aggregated as (
    select
        event_date,
        provider,
        model,
        cast(sum(calls) as bigint) as calls,
        cast(coalesce(sum(calls) filter (where not is_priced), 0) as bigint) as unpriced_calls,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_tokens) as bigint) as cache_read_tokens,
        cast(sum(cache_write_5m_tokens) as bigint) as cache_write_5m_tokens,
        cast(sum(cache_write_1h_tokens) as bigint) as cache_write_1h_tokens,
        sum(cost_usd) as cost_usd
    from calls
    group by event_date, provider, model
),

final as (
    select
        *,
        exact_ratio(calls, sum(calls) over (partition by event_date)) as share_of_calls,
        exact_ratio(cost_usd, sum(cost_usd) over (partition by event_date)) as share_of_cost
    from aggregated
)

select * from final
