"""What the poller hands the lake writer and what it gets back: plain data, no pyarrow.

Kept apart from :mod:`pipeline.consumer.sink` so that the poller process never imports the
writer's libraries (pyarrow, pydantic models, msgspec): the lake writer process imports them
itself, on the other core, while the poller connects to Kafka (start-up is on the clock of
``make bench``'s ingest figure).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pipeline.token_kinds import TOKEN_KINDS

__all__ = ["RawBatch", "Flushed", "TokenSums", "TOKEN_KINDS"]

#: (provider, model, role) -> the flush's sums of the five token columns, in the order of
#: :data:`TOKEN_KINDS`.
TokenSums = dict[tuple[str, str, str], tuple[int, int, int, int, int]]


@dataclass(slots=True)
class RawBatch:
    """Messages of one poll, grouped by partition: parallel lists plus contiguous segments."""

    partitions: list[int]
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    ingested_at: dt.datetime
    # (partition, start index, end index) of each partition's slice of the lists
    segments: list[tuple[int, int, int]]


@dataclass(slots=True)
class Flushed:
    """A durable flush: the caller may commit ``last_offset + 1`` of ``partition``."""

    partition: int
    first_offset: int
    last_offset: int
    landed: int
    rejected: int
    files: int
    seconds: float
    dlq_failed: int = 0
    fast: int = 0
    # the landed llm_call rows' token sums per (provider, model, role): live spend metrics
    tokens: TokenSums = field(default_factory=dict)
