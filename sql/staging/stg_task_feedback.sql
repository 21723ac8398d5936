-- stg_task_feedback: one row per distinct event_id of the lake's task_feedback table.
-- key: event_id. Duplicates (producer retries): first_landed_copy (_macros.sql) keeps the
-- earliest (kafka_partition, kafka_offset).
-- depends on: lake_task_feedback
with

source as (
    select * from lake_task_feedback
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
        cast(satisfaction as integer) as satisfaction,
        cast(escalation_needed as boolean) as escalation_needed,
        cast(review_consistent as boolean) as review_consistent,
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
