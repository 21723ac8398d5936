-- mart_escalations_by_trigger: one row per (event_date, role, escalation_trigger) with
-- escalated calls. key: (event_date, role, escalation_trigger).
-- A task counts once per group it has escalated calls in; its verdict is the task's latest
-- escalation_needed (fct_task_verdicts). false_positive_rate = false_positives / tasks_with_verdict.
-- depends on: fct_llm_calls, fct_task_verdicts
with

calls as (
    select * from fct_llm_calls where escalated
),

verdicts as (
    select * from fct_task_verdicts
),

by_task as (
    select
        event_date,
        role,
        escalation_trigger,
        task_id,
        count(*) as escalated_calls,
        count(*) filter (where not is_priced) as unpriced_calls,
        sum(cost_usd) as cost_usd,
        sum(baseline_cost_usd) as baseline_cost_usd
    from calls
    group by event_date, role, escalation_trigger, task_id
),

with_verdicts as (
    select
        by_task.*,
        verdicts.task_id is not null as has_verdict,
        coalesce(verdicts.escalation_needed = false, false) as is_false_positive
    from by_task
    left join verdicts
        on verdicts.task_id = by_task.task_id
),

aggregated as (
    select
        event_date,
        role,
        escalation_trigger,
        cast(sum(escalated_calls) as bigint) as escalated_calls,
        count(*) as escalated_tasks,
        cast(sum(unpriced_calls) as bigint) as unpriced_calls,
        sum(cost_usd) as cost_usd,
        sum(baseline_cost_usd) as baseline_cost_usd,
        count(*) filter (where has_verdict) as tasks_with_verdict,
        count(*) filter (where is_false_positive) as false_positives
    from with_verdicts
    group by event_date, role, escalation_trigger
),

final as (
    select
        *,
        exact_ratio(false_positives, tasks_with_verdict) as false_positive_rate
    from aggregated
)

select * from final
