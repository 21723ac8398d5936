-- rpt_data_warnings: one row per (event_date, warning, subject) that needs attention, plus
-- one 'lake_freshness' row per day. key: (event_date, warning, subject).
-- warning            subject                  events
-- unpriced_calls     provider/model           calls with no price in force for their model (or
--                                             '<baseline provider/model> (baseline)' when only the baseline lacks one)
-- unknown_role       role                     llm_call and task_feedback events of a role not in the policy
-- unassigned_role    role                     events of the policy's unresolved role (a collector
--                                             found no role for them in schemas/sources.yaml)
-- unknown_trigger    role/escalation_trigger  escalated calls whose trigger is not one of the role's
-- unattributed_trigger role/escalation_trigger escalated calls of the policy's unresolved trigger
--                                             (their source does not record why; shown apart)
-- retired_model      provider/model           calls made on or after the model's retirement date
--                                             (dim_models; requests to it fail)
-- duplicate_events   event type               extra copies landed by producer retries (counted once)
-- rejected_events    kafka topic              messages dead-lettered (event_date = received_date)
-- lake_freshness     event type               events landed for the day; last_ingested_at = max ingested_at
-- depends on: mart_daily_call_summary, fct_task_feedback, stg_rejected, dim_policy, dim_models
with

calls as (
    select * from mart_daily_call_summary
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

models as (
    select * from dim_models
),

warnings as (
    select
        event_date,
        'unpriced_calls' as warning,
        case
            when not has_model_price then provider || '/' || model
            else policy.baseline_provider || '/' || policy.baseline_model || ' (baseline)'
        end as subject,
        sum(calls) as events,
        max(last_ingested_at) as last_ingested_at
    from calls cross join policy
    where not is_priced
    group by all

    union all
    select
        event_date,
        case when role = policy.unresolved_role then 'unassigned_role' else 'unknown_role' end,
        role,
        sum(events),
        max(last_ingested_at)
    from (
        select event_date, role, calls as events, last_ingested_at from calls where not is_known_role
        union all
        select event_date, role, 1, ingested_at from feedback where not is_known_role
    ) cross join policy
    group by all

    union all
    select
        event_date,
        case
            when escalation_trigger = policy.unresolved_trigger then 'unattributed_trigger'
            else 'unknown_trigger'
        end,
        role || '/' || escalation_trigger,
        sum(calls),
        max(last_ingested_at)
    from calls cross join policy
    where not is_known_trigger
    group by all

    union all
    select calls.event_date, 'retired_model', calls.provider || '/' || calls.model,
           sum(calls.calls), max(calls.last_ingested_at)
    from calls
    join models
        on models.provider = calls.provider
        and models.model = calls.model
        and calls.event_date >= models.retired_on
    group by all

    union all
    select event_date, 'duplicate_events', event_type, sum(extra_copies), max(last_ingested_at)
    from (
        select event_date, 'llm_call' as event_type, extra_copies, last_ingested_at from calls
        union all
        select event_date, 'task_feedback', landed_copies - 1, ingested_at from feedback
    )
    group by all
    having sum(extra_copies) > 0

    union all
    select received_date, 'rejected_events', kafka_topic, count(*), max(ingested_at)
    from rejected
    group by all

    union all
    select event_date, 'lake_freshness', event_type, sum(events), max(last_ingested_at)
    from (
        select event_date, 'llm_call' as event_type, calls as events, last_ingested_at from calls
        union all
        select event_date, 'task_feedback', 1, ingested_at from feedback
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
