-- fct_task_feedback: one row per distinct task_feedback event_id.
-- incremental: partition event_date, key event_id
-- key: event_id.
-- depends on: stg_task_feedback, dim_roles
with

feedback as (
    select * from stg_task_feedback
),

roles as (
    select * from dim_roles
),

final as (
    select
        feedback.event_id,
        feedback.occurred_at,
        feedback.event_date,
        feedback.agent_id,
        feedback.task_id,
        feedback.role,
        roles.role is not null as is_known_role,
        feedback.satisfaction,
        feedback.escalation_needed,
        feedback.review_consistent,
        feedback.landed_copies,
        feedback.kafka_topic,
        feedback.kafka_partition,
        feedback.kafka_offset,
        feedback.ingested_at
    from feedback
    left join roles
        on roles.role = feedback.role
)

select * from final
