-- mart_daily_call_summary: one row per (event_date, role, provider, model, escalated,
-- escalation_trigger, is_priced, is_default_model, is_known_role, is_known_trigger,
-- has_model_price): the calls of fct_llm_calls summed, so that the daily marts and the data
-- warnings read a few thousand rows instead of every call.
-- key: (event_date, role, provider, model, escalated, escalation_trigger, is_priced,
-- is_default_model, is_known_role, is_known_trigger, has_model_price).
-- incremental: partition event_date
-- depends on: fct_llm_calls
with

calls as (
    select * from fct_llm_calls
),

final as (
    select
        event_date,
        role,
        provider,
        model,
        escalated,
        escalation_trigger,
        is_priced,
        is_default_model,
        is_known_role,
        is_known_trigger,
        price_effective_from is not null as has_model_price,
        count(*) as calls,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_tokens) as bigint) as cache_read_tokens,
        cast(sum(cache_write_5m_tokens) as bigint) as cache_write_5m_tokens,
        cast(sum(cache_write_1h_tokens) as bigint) as cache_write_1h_tokens,
        sum(cost_usd) as cost_usd,
        sum(baseline_cost_usd) as baseline_cost_usd,
        sum(savings_usd) as savings_usd,
        cast(sum(landed_copies - 1) as bigint) as extra_copies,
        max(ingested_at) as last_ingested_at
    from calls
    group by all
)

select * from final
