-- fct_escalated_tasks: one row per task with at least one escalated call.
-- key: task_id. The task belongs to the day (event_date) and role of its first escalated
-- call; is_false_positive = a verdict says escalation_needed = false.
-- depends on: fct_llm_calls, fct_task_verdicts
with

calls as (
    select * from fct_llm_calls
),

verdicts as (
    select * from fct_task_verdicts
),

escalated_calls as (
    select * from calls where escalated
),

first_escalation as (
    select
        task_id,
        occurred_at as first_escalated_at,
        event_date,
        role,
        escalation_trigger
    from escalated_calls
    qualify row_number() over (partition by task_id order by occurred_at, event_id) = 1
),

totals as (
    select
        task_id,
        count(*) as escalated_calls,
        sum(cost_usd) as escalated_cost_usd,
        sum(baseline_cost_usd) as escalated_baseline_cost_usd
    from escalated_calls
    group by task_id
),

final as (
    select
        first_escalation.task_id,
        first_escalation.event_date,
        first_escalation.first_escalated_at,
        first_escalation.role,
        first_escalation.escalation_trigger,
        totals.escalated_calls,
        totals.escalated_cost_usd,
        totals.escalated_baseline_cost_usd,
        verdicts.task_id is not null as has_verdict,
        verdicts.escalation_needed,
        coalesce(verdicts.escalation_needed = false, false) as is_false_positive
    from first_escalation
    inner join totals
        on totals.task_id = first_escalation.task_id
    left join verdicts
        on verdicts.task_id = first_escalation.task_id
)

select * from final
