"""The five token kinds of the contract, in one place: an llm_call event's ``<kind>_tokens``
fields, the price book's ``usd_per_mtok_<kind>`` columns, the consumer's token counters and
the simulator's summary all use these names in this order. Imports nothing (the consumer's
poller reads it without pyarrow)."""

__all__ = ["TOKEN_KINDS"]

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
