-- stg_rejected: one row per rejected Kafka message (kafka_topic, kafka_partition, kafka_offset).
-- key: (kafka_topic, kafka_partition, kafka_offset). The raw bytes stay in the lake; the
-- warehouse keeps their size and the reason they were rejected.
-- depends on: lake_rejected
with

source as (
    select * from lake_rejected
),

renamed as (
    select
        cast(received_date as date) as received_date,
        cast(error as varchar) as error,
        octet_length(raw_value) as raw_value_bytes,
        raw_value is null as is_tombstone,
        cast(kafka_topic as varchar) as kafka_topic,
        cast(kafka_partition as integer) as kafka_partition,
        cast(kafka_offset as bigint) as kafka_offset,
        cast(ingested_at as timestamptz) as ingested_at
    from source
),

deduplicated as (
    select * from renamed
    qualify row_number() over (
        partition by kafka_topic, kafka_partition, kafka_offset
        order by ingested_at
    ) = 1
),

final as (
    select * from deduplicated
)

select * from final
