-- dim_dates: one row per UTC day from the first to the last day with any event.
-- key: event_date. Days without traffic inside that span are present (gaps show as no_data).
-- depends on: fct_llm_calls, fct_task_feedback
with

calls as (
    select event_date from fct_llm_calls
),

feedback as (
    select event_date from fct_task_feedback
),

span as (
    select min(event_date) as first_date, max(event_date) as last_date
    from (select event_date from calls union all select event_date from feedback)
),

days as (
    select cast(day as date) as event_date
    from span, range(span.first_date, span.last_date + interval 1 day, interval 1 day) as t(day)
    where span.first_date is not null
),

final as (
    select
        event_date,
        cast(date_trunc('month', event_date) as date) as month
    from days
)

select * from final
