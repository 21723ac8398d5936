-- mart_kpi_components: one row per (period, period_start), period 'day' or 'month', with the
-- additive numerators and denominators of every KPI (so a month is the sum of its days).
-- key: (period, period_start). Periods are the days of dim_dates and their months, plus
-- 'month_to_date' (period_start = a day: its month's days up to and including it; the report).
-- depends on: dim_dates, mart_daily_call_summary, fct_task_feedback, fct_escalated_tasks
with

days as (
    select * from dim_dates
),

calls as (
    select * from mart_daily_call_summary
),

feedback as (
    select * from fct_task_feedback
),

escalated_tasks as (
    select * from fct_escalated_tasks
),

calls_by_day as (
    select
        event_date,
        sum(calls) as calls,
        coalesce(sum(calls) filter (where is_default_model), 0) as default_model_calls,
        coalesce(sum(calls) filter (where not is_priced), 0) as unpriced_calls,
        sum(cost_usd) as cost_usd,
        sum(savings_usd) as savings_usd,
        sum(baseline_cost_usd) as baseline_cost_usd
    from calls
    group by event_date
),

feedback_by_day as (
    select
        event_date,
        sum(satisfaction) as satisfaction_sum,
        count(satisfaction) as satisfaction_responses,
        count(*) filter (where review_consistent) as consistent_reviews,
        count(review_consistent) as reviews
    from feedback
    group by event_date
),

escalations_by_day as (
    select
        event_date,
        count(*) as escalated_tasks,
        count(*) filter (where has_verdict) as escalated_tasks_with_verdict,
        count(*) filter (where is_false_positive) as false_positive_tasks
    from escalated_tasks
    group by event_date
),

daily as (
    select
        days.event_date,
        days.month,
        coalesce(calls_by_day.calls, 0) as calls,
        coalesce(calls_by_day.default_model_calls, 0) as default_model_calls,
        coalesce(calls_by_day.unpriced_calls, 0) as unpriced_calls,
        calls_by_day.cost_usd,
        calls_by_day.savings_usd,
        calls_by_day.baseline_cost_usd,
        feedback_by_day.satisfaction_sum,
        coalesce(feedback_by_day.satisfaction_responses, 0) as satisfaction_responses,
        coalesce(feedback_by_day.consistent_reviews, 0) as consistent_reviews,
        coalesce(feedback_by_day.reviews, 0) as reviews,
        coalesce(escalations_by_day.escalated_tasks, 0) as escalated_tasks,
        coalesce(escalations_by_day.escalated_tasks_with_verdict, 0) as escalated_tasks_with_verdict,
        coalesce(escalations_by_day.false_positive_tasks, 0) as false_positive_tasks
    from days
    left join calls_by_day on calls_by_day.event_date = days.event_date
    left join feedback_by_day on feedback_by_day.event_date = days.event_date
    left join escalations_by_day on escalations_by_day.event_date = days.event_date
),

days_and_months as (
    select
        case when grouping(event_date) = 0 then 'day' else 'month' end as period,
        coalesce(event_date, month) as period_start,
        sum(calls) as calls,
        sum(default_model_calls) as default_model_calls,
        sum(unpriced_calls) as unpriced_calls,
        sum(cost_usd) as cost_usd,
        sum(savings_usd) as savings_usd,
        sum(baseline_cost_usd) as baseline_cost_usd,
        sum(satisfaction_sum) as satisfaction_sum,
        sum(satisfaction_responses) as satisfaction_responses,
        sum(consistent_reviews) as consistent_reviews,
        sum(reviews) as reviews,
        sum(escalated_tasks) as escalated_tasks,
        sum(escalated_tasks_with_verdict) as escalated_tasks_with_verdict,
        sum(false_positive_tasks) as false_positive_tasks
    from daily
    group by grouping sets ((month, event_date), (month))
),

month_to_date as (
    select
        'month_to_date' as period,
        event_date as period_start,
        sum(calls) over month_so_far as calls,
        sum(default_model_calls) over month_so_far as default_model_calls,
        sum(unpriced_calls) over month_so_far as unpriced_calls,
        sum(cost_usd) over month_so_far as cost_usd,
        sum(savings_usd) over month_so_far as savings_usd,
        sum(baseline_cost_usd) over month_so_far as baseline_cost_usd,
        sum(satisfaction_sum) over month_so_far as satisfaction_sum,
        sum(satisfaction_responses) over month_so_far as satisfaction_responses,
        sum(consistent_reviews) over month_so_far as consistent_reviews,
        sum(reviews) over month_so_far as reviews,
        sum(escalated_tasks) over month_so_far as escalated_tasks,
        sum(escalated_tasks_with_verdict) over month_so_far as escalated_tasks_with_verdict,
        sum(false_positive_tasks) over month_so_far as false_positive_tasks
    from daily
    window month_so_far as (
        partition by month order by event_date rows between unbounded preceding and current row
    )
),

unioned as (
    select * from days_and_months
    union all by name
    select * from month_to_date
),

final as (
    select
        period,
        period_start,
        cast(calls as bigint) as calls,
        cast(default_model_calls as bigint) as default_model_calls,
        cast(unpriced_calls as bigint) as unpriced_calls,
        cost_usd,
        savings_usd,
        baseline_cost_usd,
        cast(satisfaction_sum as bigint) as satisfaction_sum,
        cast(satisfaction_responses as bigint) as satisfaction_responses,
        cast(consistent_reviews as bigint) as consistent_reviews,
        cast(reviews as bigint) as reviews,
        cast(escalated_tasks as bigint) as escalated_tasks,
        cast(escalated_tasks_with_verdict as bigint) as escalated_tasks_with_verdict,
        cast(false_positive_tasks as bigint) as false_positive_tasks
    from unioned
)

select * from final
