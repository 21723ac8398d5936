-- rpt_data_warnings: one row per (event_date, warning, subject) that needs attention, plus
-- one 'lake_freshness' row per day. key: (event_date, warning, subject).
-- warning            subject                  events
-- unpriced_calls     provider/model           calls with no price in force for their model (or
--                                             '<baseline provider/model> (baseline)' when only the baseline lacks one)
-- unknown_role       role                     llm_call and task_feedback events of a role not in the policy
-- unknown_trigger    role/escalation_trigger  escalated calls whose trigger is not one of the role's
-- duplicate_events   event type               extra copies landed by producer retries (counted once)
-- rejected_events    kafka topic              messages dead-lettered (event_date = received_date)
-- lake_freshness     event type               events landed for the day; last_ingested_at = max ingested_at
with

calls as (
    select * from fct_llm_calls
),

feedback as (
    select * from fct_task_feedback
),

rejected as (
    select * from stg_rejected
),

policy as (
    select * from dim_policy
),

warnings as (
    select
        event_date,
        'unpriced_calls' as warning,
        case
            when price_effective_from is null then provider || '/' || model
            else policy.baseline_provider || '/' || policy.baseline_model || ' (baseline)'
        end as subject,
        count(*) as events,
        max(ingested_at) as last_ingested_at
    from calls cross join policy
    where not is_priced
    group by all

    union all
    select event_date, 'unknown_role', role, count(*), max(ingested_at)
    from (
        select event_date, role, ingested_at from calls where not is_known_role
        union all
        select event_date, role, ingested_at from feedback where not is_known_role
    )
    group by all

    union all
    select event_date, 'unknown_trigger', role || '/' || escalation_trigger, count(*),
           max(ingested_at)
    from calls where not is_known_trigger
    group by all

    union all
    select event_date, 'duplicate_events', event_type, sum(landed_copies - 1), max(ingested_at)
    from (
        select event_date, 'llm_call' as event_type, landed_copies, ingested_at from calls
        union all
        select event_date, 'task_feedback', landed_copies, ingested_at from feedback
    )
    where landed_copies > 1
    group by all

    union all
    select received_date, 'rejected_events', kafka_topic, count(*), max(ingested_at)
    from rejected
    group by all

    union all
    select event_date, 'lake_freshness', event_type, count(*), max(ingested_at)
    from (
        select event_date, 'llm_call' as event_type, ingested_at from calls
        union all
        select event_date, 'task_feedback', ingested_at from feedback
    )
    group by all
),

final as (
    select
        event_date,
        warning,
        subject,
        cast(events as bigint) as events,
        last_ingested_at
    from warnings
)

select * from final
