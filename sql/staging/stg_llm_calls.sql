-- stg_llm_calls: one row per distinct event_id of the lake's llm_call table.
-- key: event_id. A producer retry lands the same event_id twice; first_landed_copy (_macros.sql)
-- keeps the copy with the earliest (kafka_partition, kafka_offset), whatever the file order.
-- lake_llm_call is registered by the build (pipeline/warehouse/lake_sources.py) over the
-- lake's files, or as an empty table of the lake schema when the lake has none.
-- depends on: lake_llm_call
with

source as (
    select * from lake_llm_call
),

renamed as (
    select
        cast(event_id as varchar) as event_id,
        cast(schema_version as integer) as schema_version,
        cast(occurred_at as timestamptz) as occurred_at,
        cast(event_date as date) as event_date,
        cast(agent_id as varchar) as agent_id,
        cast(task_id as varchar) as task_id,
        cast(role as varchar) as role,
        cast(provider as varchar) as provider,
        cast(model as varchar) as model,
        cast(input_tokens as bigint) as input_tokens,
        cast(output_tokens as bigint) as output_tokens,
        cast(cache_read_tokens as bigint) as cache_read_tokens,
        cast(cache_write_5m_tokens as bigint) as cache_write_5m_tokens,
        cast(cache_write_1h_tokens as bigint) as cache_write_1h_tokens,
        cast(latency_ms as bigint) as latency_ms,
        cast(status as varchar) as status,
        cast(escalated as boolean) as escalated,
        cast(escalation_trigger as varchar) as escalation_trigger,
        cast(policy_version as varchar) as policy_version,
        cast(task_type as varchar) as task_type,
        cast(kafka_topic as varchar) as kafka_topic,
        cast(kafka_partition as integer) as kafka_partition,
        cast(kafka_offset as bigint) as kafka_offset,
        cast(ingested_at as timestamptz) as ingested_at
    from source
),

deduplicated as (
    select * from first_landed_copy(renamed)
),

final as (
    select * from deduplicated
)

select * from final
