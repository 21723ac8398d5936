-- Macros shared by the models (run first). Money is DECIMAL(38,12); DuckDB's "/" on decimals
-- returns DOUBLE, so ratios go through exact_ratio instead.

-- numerator / denominator as DECIMAL(38,12), truncated toward zero at the 12th decimal;
-- NULL when either side is NULL or the denominator is 0. Exact for |numerator| < 1e14.
create or replace macro exact_ratio(numerator, denominator) as (
    case
        when denominator = 0 then null
        else cast(
            cast(
                cast(cast(numerator as decimal(38, 12)) * 1000000000000 as hugeint) * 1000000000000
                // cast(cast(denominator as decimal(38, 12)) * 1000000000000 as hugeint)
                as decimal(38, 0)
            ) * cast('0.000000000001' as decimal(13, 12))
            as decimal(38, 12)
        )
    end
);

-- USD cost of one call: sum over the five token kinds of tokens x USD per million tokens / 1e6.
-- Prices have at most 6 decimals and are below 1e9 (pipeline.prices checks both), so the cast
-- to DECIMAL(18,6) is exact, each product is exact at scale 6 and the division by 1e6 (a
-- multiplication by 0.000001) is exact at scale 12. Pass prices already cast to
-- DECIMAL(18,6) (fct_llm_calls does): casting DECIMAL(38,12) per row is far slower.
-- NULL when any price is NULL (no price in force): unpriced is never $0.
create or replace macro token_cost(
    input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    usd_per_mtok_input, usd_per_mtok_output, usd_per_mtok_cache_read,
    usd_per_mtok_cache_write_5m, usd_per_mtok_cache_write_1h
) as (
    cast(
        cast(
            cast(input_tokens as decimal(18, 0)) * cast(usd_per_mtok_input as decimal(18, 6))
            + cast(output_tokens as decimal(18, 0)) * cast(usd_per_mtok_output as decimal(18, 6))
            + cast(cache_read_tokens as decimal(18, 0)) * cast(usd_per_mtok_cache_read as decimal(18, 6))
            + cast(cache_write_5m_tokens as decimal(18, 0)) * cast(usd_per_mtok_cache_write_5m as decimal(18, 6))
            + cast(cache_write_1h_tokens as decimal(18, 0)) * cast(usd_per_mtok_cache_write_1h as decimal(18, 6))
            as decimal(38, 6)
        ) * cast('0.000001' as decimal(7, 6))
        as decimal(38, 12)
    )
);

-- The status of a KPI value against its target (bounds may be NULL = none): 'met' inside the
-- band; outside a range target (both bounds set) 'below_range' or 'above_range'; outside a
-- one-sided target 'missed'; 'no_data' for no value. pipeline.policy.KpiTarget.status agrees.
create or replace macro kpi_status(actual, target_min, target_max, min_inclusive, max_inclusive) as (
    case
        when actual is null then 'no_data'
        when target_min is not null
            and (actual < target_min or (actual = target_min and not min_inclusive))
            then case when target_max is not null then 'below_range' else 'missed' end
        when target_max is not null
            and (actual > target_max or (actual = target_max and not max_inclusive))
            then case when target_min is not null then 'above_range' else 'missed' end
        else 'met'
    end
);

-- The rows of `events` (a lake event table or CTE of the staging models) with one row per
-- event_id: a producer retry lands the same event_id twice, and the copy with the earliest
-- (kafka_partition, kafka_offset) is kept, so the result does not depend on file order.
-- landed_copies = how many copies landed (1 = no duplicate).
create or replace macro first_landed_copy(events) as table
    select
        *,
        count(*) over (partition by event_id) as landed_copies
    from query_table(events)
    qualify row_number() over (
        partition by event_id
        order by kafka_partition, kafka_offset, kafka_topic, ingested_at
    ) = 1;
