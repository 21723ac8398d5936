-- fct_llm_calls: one row per distinct llm_call event_id, priced.
-- incremental: partition event_date, key event_id
-- key: event_id.
-- cost_usd: the call's tokens at the price of (provider, model) in force at occurred_at
-- (effective_from <= occurred_at < effective_to, an open effective_to never ends);
-- baseline_cost_usd: the same tokens at the policy's baseline model's price in force at the
-- same instant; savings_usd = baseline - cost. Without both prices the call is unpriced:
-- is_priced = false and all three money columns are NULL, never $0.
-- depends on: stg_llm_calls, dim_prices, dim_policy, dim_roles, dim_triggers
with

calls as (
    select * from stg_llm_calls
),

prices as (
    -- DECIMAL(18,6) holds every valid price exactly and keeps token_cost fast
    select
        provider,
        model,
        effective_from,
        effective_to,
        cast(usd_per_mtok_input as decimal(18, 6)) as usd_per_mtok_input,
        cast(usd_per_mtok_output as decimal(18, 6)) as usd_per_mtok_output,
        cast(usd_per_mtok_cache_read as decimal(18, 6)) as usd_per_mtok_cache_read,
        cast(usd_per_mtok_cache_write_5m as decimal(18, 6)) as usd_per_mtok_cache_write_5m,
        cast(usd_per_mtok_cache_write_1h as decimal(18, 6)) as usd_per_mtok_cache_write_1h
    from dim_prices
),

policy as (
    select * from dim_policy
),

roles as (
    select * from dim_roles
),

triggers as (
    select * from dim_triggers
),

priced as (
    select
        calls.*,
        price.effective_from as price_effective_from,
        baseline.effective_from as baseline_price_effective_from,
        token_cost(
            calls.input_tokens, calls.output_tokens, calls.cache_read_tokens,
            calls.cache_write_5m_tokens, calls.cache_write_1h_tokens,
            price.usd_per_mtok_input, price.usd_per_mtok_output, price.usd_per_mtok_cache_read,
            price.usd_per_mtok_cache_write_5m, price.usd_per_mtok_cache_write_1h
        ) as model_cost_usd,
        token_cost(
            calls.input_tokens, calls.output_tokens, calls.cache_read_tokens,
            calls.cache_write_5m_tokens, calls.cache_write_1h_tokens,
            baseline.usd_per_mtok_input, baseline.usd_per_mtok_output,
            baseline.usd_per_mtok_cache_read, baseline.usd_per_mtok_cache_write_5m,
            baseline.usd_per_mtok_cache_write_1h
        ) as model_baseline_cost_usd,
        calls.provider = policy.default_provider
            and calls.model = policy.default_model as is_default_model,
        calls.provider = policy.premium_provider
            and calls.model = policy.premium_model as is_premium_model
    from calls
    cross join policy
    left join prices as price
        on price.provider = calls.provider
        and price.model = calls.model
        and price.effective_from <= calls.occurred_at
        and (price.effective_to is null or calls.occurred_at < price.effective_to)
    left join prices as baseline
        on baseline.provider = policy.baseline_provider
        and baseline.model = policy.baseline_model
        and baseline.effective_from <= calls.occurred_at
        and (baseline.effective_to is null or calls.occurred_at < baseline.effective_to)
),

final as (
    select
        priced.event_id,
        priced.occurred_at,
        priced.event_date,
        priced.agent_id,
        priced.task_id,
        priced.role,
        roles.role is not null as is_known_role,
        priced.provider,
        priced.model,
        priced.is_default_model,
        priced.is_premium_model,
        priced.input_tokens,
        priced.output_tokens,
        priced.cache_read_tokens,
        priced.cache_write_5m_tokens,
        priced.cache_write_1h_tokens,
        priced.latency_ms,
        priced.status,
        priced.task_type,
        priced.escalated,
        priced.escalation_trigger,
        priced.escalation_trigger is null or triggers.trigger_id is not null as is_known_trigger,
        priced.policy_version,
        priced.model_cost_usd is not null
            and priced.model_baseline_cost_usd is not null as is_priced,
        case when is_priced then priced.model_cost_usd end as cost_usd,
        case when is_priced then priced.model_baseline_cost_usd end as baseline_cost_usd,
        case when is_priced
            then priced.model_baseline_cost_usd - priced.model_cost_usd
        end as savings_usd,
        priced.price_effective_from,
        priced.baseline_price_effective_from,
        priced.landed_copies,
        priced.kafka_topic,
        priced.kafka_partition,
        priced.kafka_offset,
        priced.ingested_at
    from priced
    left join roles
        on roles.role = priced.role
    left join triggers
        on triggers.role = priced.role
        and triggers.trigger_id = priced.escalation_trigger
)

select * from final
