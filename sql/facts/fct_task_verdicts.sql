-- fct_task_verdicts: one row per task_id with a reviewer's escalation verdict.
-- key: task_id. When a task has several feedback events with a non-null escalation_needed,
-- the latest (occurred_at, then event_id) is the verdict.
-- depends on: fct_task_feedback
with

feedback as (
    select * from fct_task_feedback
),

latest as (
    select
        task_id,
        escalation_needed,
        occurred_at as verdict_at,
        event_id as verdict_event_id
    from feedback
    where escalation_needed is not null
    qualify row_number() over (
        partition by task_id order by occurred_at desc, event_id desc
    ) = 1
),

final as (
    select * from latest
)

select * from final
