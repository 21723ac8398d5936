-- mart_policy_versions: the policy versions of a month compared side by side (a canary, a
-- policy change). One row per (month, policy_version) of every month whose tasks were routed
-- by more than one policy_version. key: (month, policy_version).
-- A task belongs to the version, day and month of its first call (llm_call events without a
-- policy_version are left out). The window is the month's days on which at least two
-- versions routed tasks (concurrent = true: a canary's days, a fair comparison); when the
-- versions never ran on the same day, the whole month (concurrent = false: a before/after
-- comparison, confounded by time). Per version over the window: tasks, calls, cost per task
-- (priced tasks only: a task with an unpriced call is left out of the cost), escalation rate
-- (tasks with an escalated call / tasks), false-positive rate (escalated tasks whose verdict
-- says escalation_needed = false / escalated tasks with a verdict), satisfaction (mean over the
-- feedback events of the tasks), review consistency (consistent reviews / reviews).
-- The baseline is the incumbent: the version with the earliest first call in the warehouse
-- (ties: the smaller version string). Candidate rows carry the difference candidate -
-- baseline with a 95 % confidence interval (z = 1.96): means (cost per task, satisfaction)
-- Welch's unequal-variance standard error with the normal quantile (large samples);
-- proportions Newcombe's hybrid score interval (from the two Wilson intervals); the relative
-- cost change candidate/baseline - 1 by the delta method. Point estimates and money are exact
-- DECIMAL; standard deviations and interval bounds are statistics computed in DOUBLE (square
-- roots) and stored as DECIMAL(38,12), rounded to 12 decimals; the USD bounds of the cost
-- difference are the exact difference -/+ the Welch half-width rounded to 12 decimals.
-- depends on: fct_llm_calls, fct_task_feedback, fct_task_verdicts
with

calls as (
    select * from fct_llm_calls where policy_version is not null
),

feedback as (
    select * from fct_task_feedback
),

verdicts as (
    select * from fct_task_verdicts
),

tasks as (
    select
        task_id,
        arg_min(policy_version, occurred_at) as policy_version,
        min(occurred_at) as first_call_at,
        arg_min(event_date, occurred_at) as task_date,
        count(*) as calls,
        count(*) filter (where not is_priced) as unpriced_calls,
        sum(cost_usd) as cost_usd,
        bool_or(escalated) as escalated
    from calls
    group by task_id
),

dated as (
    select *, cast(date_trunc('month', task_date) as date) as month from tasks
),

incumbency as (
    -- the incumbent of every version: its first call in the whole warehouse
    select policy_version, min(first_call_at) as version_first_call_at
    from dated group by policy_version
),

versions_by_day as (
    select month, task_date, count(distinct policy_version) as versions
    from dated group by month, task_date
),

months as (
    select
        month,
        coalesce(min(task_date) filter (where versions > 1), min(task_date)) as window_start,
        coalesce(max(task_date) filter (where versions > 1), max(task_date)) as window_end,
        count(*) filter (where versions > 1) > 0 as concurrent
    from versions_by_day
    group by month
    having month in (
        select month from dated group by month having count(distinct policy_version) > 1
    )
),

windowed as (
    select dated.*, months.window_start, months.window_end, months.concurrent
    from dated
    inner join months
        on months.month = dated.month
        and dated.task_date between months.window_start and months.window_end
),

feedback_by_version as (
    select
        windowed.month,
        windowed.policy_version,
        sum(feedback.satisfaction) as satisfaction_sum,
        count(feedback.satisfaction) as satisfaction_responses,
        stddev_samp(cast(feedback.satisfaction as double)) as satisfaction_sd,
        count(*) filter (where feedback.review_consistent) as consistent_reviews,
        count(feedback.review_consistent) as reviews
    from windowed
    inner join feedback on feedback.task_id = windowed.task_id
    group by windowed.month, windowed.policy_version
),

per_version as (
    select
        windowed.month,
        windowed.policy_version,
        any_value(windowed.window_start) as window_start,
        any_value(windowed.window_end) as window_end,
        bool_and(windowed.concurrent) as concurrent,
        count(*) as tasks,
        cast(sum(windowed.calls) as bigint) as calls,
        cast(sum(windowed.unpriced_calls) as bigint) as unpriced_calls,
        count(*) filter (where windowed.unpriced_calls = 0) as priced_tasks,
        sum(windowed.cost_usd) filter (where windowed.unpriced_calls = 0) as cost_usd,
        stddev_samp(cast(windowed.cost_usd as double))
            filter (where windowed.unpriced_calls = 0) as cost_per_task_sd,
        count(*) filter (where windowed.escalated) as escalated_tasks,
        count(*) filter (where windowed.escalated and verdicts.task_id is not null)
            as escalated_tasks_with_verdict,
        count(*) filter (where windowed.escalated and verdicts.escalation_needed = false)
            as false_positives
    from windowed
    left join verdicts on verdicts.task_id = windowed.task_id
    group by windowed.month, windowed.policy_version
),

figures as (
    select
        per_version.*,
        cast(coalesce(fb.satisfaction_sum, 0) as bigint) as satisfaction_sum,
        coalesce(fb.satisfaction_responses, 0) as satisfaction_responses,
        fb.satisfaction_sd,
        coalesce(fb.consistent_reviews, 0) as consistent_reviews,
        coalesce(fb.reviews, 0) as reviews,
        exact_ratio(per_version.cost_usd, per_version.priced_tasks) as cost_per_task_usd,
        exact_ratio(per_version.escalated_tasks, per_version.tasks) as escalation_rate,
        exact_ratio(per_version.false_positives, per_version.escalated_tasks_with_verdict)
            as false_positive_rate,
        exact_ratio(fb.satisfaction_sum, fb.satisfaction_responses) as satisfaction_avg,
        exact_ratio(fb.consistent_reviews, fb.reviews) as review_consistency,
        incumbency.version_first_call_at
    from per_version
    left join feedback_by_version as fb
        on fb.month = per_version.month and fb.policy_version = per_version.policy_version
    inner join incumbency on incumbency.policy_version = per_version.policy_version
),

-- proportions as doubles with their Wilson score interval (z = 1.96), for Newcombe's method
wilson as (
    select
        month,
        policy_version,
        metric,
        x / n as p,
        ((x / n) + 1.9208 / n) / (1 + 3.8416 / n)
            - 1.96 * sqrt((x / n) * (1 - x / n) / n + 0.9604 / (n * n)) / (1 + 3.8416 / n) as lo,
        ((x / n) + 1.9208 / n) / (1 + 3.8416 / n)
            + 1.96 * sqrt((x / n) * (1 - x / n) / n + 0.9604 / (n * n)) / (1 + 3.8416 / n) as hi
    from (
        select month, policy_version, 'escalation_rate' as metric,
               cast(escalated_tasks as double) as x, cast(tasks as double) as n
        from figures
        union all
        select month, policy_version, 'false_positive_rate',
               cast(false_positives as double), cast(escalated_tasks_with_verdict as double)
        from figures
        union all
        select month, policy_version, 'review_consistency',
               cast(consistent_reviews as double), cast(reviews as double)
        from figures
    )
    where n > 0
),

baseline as (
    select month, arg_min(policy_version, (version_first_call_at, policy_version)) as version
    from figures group by month
),

newcombe as (
    select
        c.month,
        c.policy_version,
        c.metric,
        c.p - b.p - sqrt((c.p - c.lo) * (c.p - c.lo) + (b.hi - b.p) * (b.hi - b.p)) as low,
        c.p - b.p + sqrt((c.hi - c.p) * (c.hi - c.p) + (b.p - b.lo) * (b.p - b.lo)) as high
    from wilson as c
    inner join baseline on baseline.month = c.month
    inner join wilson as b
        on b.month = c.month and b.policy_version = baseline.version and b.metric = c.metric
    where c.policy_version <> baseline.version
),

compared as (
    select
        c.*,
        baseline.version as baseline_version,
        c.policy_version = baseline.version as is_baseline,
        -- Welch standard errors of the two means (DOUBLE, statistics)
        sqrt(
            c.cost_per_task_sd * c.cost_per_task_sd / c.priced_tasks
            + b.cost_per_task_sd * b.cost_per_task_sd / b.priced_tasks
        ) as cost_diff_se,
        cast(c.cost_per_task_usd as double) / cast(b.cost_per_task_usd as double) as cost_ratio,
        sqrt(
            c.cost_per_task_sd * c.cost_per_task_sd / c.priced_tasks
            / (cast(c.cost_per_task_usd as double) * cast(c.cost_per_task_usd as double))
            + b.cost_per_task_sd * b.cost_per_task_sd / b.priced_tasks
            / (cast(b.cost_per_task_usd as double) * cast(b.cost_per_task_usd as double))
        ) as cost_ratio_rel_se,
        sqrt(
            c.satisfaction_sd * c.satisfaction_sd / c.satisfaction_responses
            + b.satisfaction_sd * b.satisfaction_sd / b.satisfaction_responses
        ) as satisfaction_diff_se,
        c.cost_per_task_usd - b.cost_per_task_usd as cost_per_task_diff_usd,
        exact_ratio(c.cost_per_task_usd - b.cost_per_task_usd, b.cost_per_task_usd)
            as cost_per_task_change,
        c.escalation_rate - b.escalation_rate as escalation_rate_diff,
        c.false_positive_rate - b.false_positive_rate as false_positive_rate_diff,
        c.satisfaction_avg - b.satisfaction_avg as satisfaction_diff,
        c.review_consistency - b.review_consistency as review_consistency_diff
    from figures as c
    inner join baseline on baseline.month = c.month
    inner join figures as b on b.month = c.month and b.policy_version = baseline.version
),

final as (
    select
        compared.month,
        compared.policy_version,
        compared.is_baseline,
        compared.baseline_version,
        compared.concurrent,
        compared.window_start,
        compared.window_end,
        compared.tasks,
        compared.calls,
        compared.unpriced_calls,
        compared.priced_tasks,
        compared.cost_usd,
        compared.cost_per_task_usd,
        cast(round(compared.cost_per_task_sd, 12) as decimal(38, 12)) as cost_per_task_sd,
        compared.escalated_tasks,
        compared.escalation_rate,
        compared.escalated_tasks_with_verdict,
        compared.false_positives,
        compared.false_positive_rate,
        compared.satisfaction_responses,
        compared.satisfaction_sum,
        compared.satisfaction_avg,
        cast(round(compared.satisfaction_sd, 12) as decimal(38, 12)) as satisfaction_sd,
        compared.reviews,
        compared.consistent_reviews,
        compared.review_consistency,
        case when not is_baseline then cost_per_task_diff_usd end as cost_per_task_diff_usd,
        case when not is_baseline then cost_per_task_diff_usd
            - cast(round(1.96 * cost_diff_se, 12) as decimal(38, 12))
        end as cost_per_task_diff_low_usd,
        case when not is_baseline then cost_per_task_diff_usd
            + cast(round(1.96 * cost_diff_se, 12) as decimal(38, 12))
        end as cost_per_task_diff_high_usd,
        case when not is_baseline then cost_per_task_change end as cost_per_task_change,
        case when not is_baseline
            then cast(round(cost_ratio - 1 - 1.96 * cost_ratio * cost_ratio_rel_se, 12) as decimal(38, 12))
        end as cost_per_task_change_low,
        case when not is_baseline
            then cast(round(cost_ratio - 1 + 1.96 * cost_ratio * cost_ratio_rel_se, 12) as decimal(38, 12))
        end as cost_per_task_change_high,
        case when not is_baseline then escalation_rate_diff end as escalation_rate_diff,
        cast(round(esc.low, 12) as decimal(38, 12)) as escalation_rate_diff_low,
        cast(round(esc.high, 12) as decimal(38, 12)) as escalation_rate_diff_high,
        case when not is_baseline then false_positive_rate_diff end as false_positive_rate_diff,
        cast(round(fp.low, 12) as decimal(38, 12)) as false_positive_rate_diff_low,
        cast(round(fp.high, 12) as decimal(38, 12)) as false_positive_rate_diff_high,
        case when not is_baseline then satisfaction_diff end as satisfaction_diff,
        case when not is_baseline
            then cast(round(cast(satisfaction_diff as double) - 1.96 * satisfaction_diff_se, 12) as decimal(38, 12))
        end as satisfaction_diff_low,
        case when not is_baseline
            then cast(round(cast(satisfaction_diff as double) + 1.96 * satisfaction_diff_se, 12) as decimal(38, 12))
        end as satisfaction_diff_high,
        case when not is_baseline then review_consistency_diff end as review_consistency_diff,
        cast(round(rc.low, 12) as decimal(38, 12)) as review_consistency_diff_low,
        cast(round(rc.high, 12) as decimal(38, 12)) as review_consistency_diff_high
    from compared
    left join newcombe as esc
        on esc.month = compared.month and esc.policy_version = compared.policy_version
        and esc.metric = 'escalation_rate'
    left join newcombe as fp
        on fp.month = compared.month and fp.policy_version = compared.policy_version
        and fp.metric = 'false_positive_rate'
    left join newcombe as rc
        on rc.month = compared.month and rc.policy_version = compared.policy_version
        and rc.metric = 'review_consistency'
)

select * from final
