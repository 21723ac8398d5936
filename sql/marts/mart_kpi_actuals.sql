-- mart_kpi_actuals: one row per (period, period_start, kpi) for the six KPIs (docs/finance.md),
-- with the policy's target and the status (met / missed / no_data).
-- key: (period, period_start, kpi). kpi_daily and kpi_monthly are its two periods.
-- Definitions (ratios exact to 12 decimals, truncated):
--   cost_reduction_pct             sum(savings_usd) / sum(baseline_cost_usd), priced calls
--   default_model_share            calls on the policy's default model / all calls
--   escalation_false_positive_rate escalated tasks with verdict escalation_needed = false /
--                                  escalated tasks with a verdict (task's day = its first escalation)
--   satisfaction_avg               mean satisfaction of the period's feedback
--   review_consistency             review_consistent = true / non-null review_consistent
--   unpriced_calls                 calls with no price in force
-- depends on: mart_kpi_components, dim_kpi_targets
with

components as (
    select * from mart_kpi_components
),

targets as (
    select * from dim_kpi_targets
),

actuals as (
    select period, period_start, kpi, actual
    from components,
    lateral (
        values
            ('cost_reduction_pct', exact_ratio(savings_usd, baseline_cost_usd)),
            ('default_model_share', exact_ratio(default_model_calls, nullif(calls, 0))),
            ('escalation_false_positive_rate',
                exact_ratio(false_positive_tasks, nullif(escalated_tasks_with_verdict, 0))),
            ('satisfaction_avg', exact_ratio(satisfaction_sum, nullif(satisfaction_responses, 0))),
            ('review_consistency', exact_ratio(consistent_reviews, nullif(reviews, 0))),
            ('unpriced_calls', cast(unpriced_calls as decimal(38, 12)))
    ) as kpis(kpi, actual)
),

final as (
    select
        actuals.period,
        actuals.period_start,
        actuals.kpi,
        actuals.actual,
        targets.target_min,
        targets.target_max,
        coalesce(targets.min_inclusive, true) as min_inclusive,
        coalesce(targets.max_inclusive, true) as max_inclusive,
        targets.unit,
        kpi_status(actuals.actual, targets.target_min, targets.target_max,
                   coalesce(targets.min_inclusive, true),
                   coalesce(targets.max_inclusive, true)) as status
    from actuals
    left join targets
        on targets.kpi = actuals.kpi
)

select * from final
