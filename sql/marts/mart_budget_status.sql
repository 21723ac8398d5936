-- mart_budget_status: one row per (event_date, budget): the month-to-date priced spend in the
-- budget's scope through that day, the projected month-end spend, and the status.
-- key: (event_date, budget).
-- projection = month-to-date spend + daily rate x days left in the month after event_date,
-- daily rate = the spend of the trailing `trailing_days` days up to event_date (days without
-- calls count as $0; days before the first day with data are not counted) / those days.
-- status: 'over' (spent more than the budget), 'projected_over' (the projection passes it),
-- 'ok'. Unpriced calls are not spend (the report flags them).
-- depends on: mart_daily_call_summary, dim_dates, dim_budgets
with

calls as (
    -- the calls summed per day (mart_daily_call_summary): a few thousand rows, not every call
    select event_date, role, provider, model, cost_usd from mart_daily_call_summary where is_priced
),

days as (
    select event_date, month from dim_dates
),

budgets as (
    select * from dim_budgets
),

daily as (
    -- each budget's spend per day with data in its scope
    select
        budgets.budget,
        calls.event_date,
        sum(calls.cost_usd) as spend_usd
    from budgets
    join calls
        on budgets.scope = 'total'
        or (budgets.scope = 'role' and calls.role = budgets.role)
        or (budgets.scope = 'model' and calls.provider = budgets.provider
            and calls.model = budgets.model)
    group by budgets.budget, calls.event_date
),

first_day as (
    select min(event_date) as first_date from days
),

per_day as (
    select
        days.event_date,
        days.month,
        budgets.budget,
        budgets.scope,
        budgets.monthly_budget_usd,
        budgets.trailing_days,
        (
            select coalesce(sum(d.spend_usd), 0)
            from daily as d
            where d.budget = budgets.budget
                and d.event_date between days.month and days.event_date
        ) as mtd_spend_usd,
        (
            select coalesce(sum(d.spend_usd), 0)
            from daily as d
            where d.budget = budgets.budget
                and d.event_date > days.event_date - budgets.trailing_days
                and d.event_date <= days.event_date
        ) as trailing_spend_usd,
        least(
            budgets.trailing_days,
            datediff('day', first_day.first_date, days.event_date) + 1
        ) as trailing_window_days,
        datediff('day', days.event_date, last_day(days.event_date)) as days_left
    from days
    cross join budgets
    cross join first_day
),

projected as (
    select
        *,
        -- exact: DECIMAL(38,12) throughout (the rate truncated at the 12th decimal)
        exact_ratio(trailing_spend_usd, trailing_window_days) as daily_rate_usd
    from per_day
),

final as (
    select
        event_date,
        month,
        budget,
        scope,
        cast(monthly_budget_usd as decimal(38, 12)) as monthly_budget_usd,
        cast(mtd_spend_usd as decimal(38, 12)) as mtd_spend_usd,
        daily_rate_usd,
        cast(days_left as integer) as days_left,
        cast(mtd_spend_usd + daily_rate_usd * days_left as decimal(38, 12)) as projected_usd,
        case
            when mtd_spend_usd > monthly_budget_usd then 'over'
            when mtd_spend_usd + daily_rate_usd * days_left > monthly_budget_usd
                then 'projected_over'
            else 'ok'
        end as status
    from projected
)

select * from final
