"""``modelmeter simulate``: agent traffic that follows the routing policy, produced to Kafka.

    traffic = load_traffic("schemas/routing_policy.yaml")       # policy + its simulation: section
    run = SimRun(events=10_000, days=30, end_date=date(2026, 11, 25), seed=42)
    chunk = generate_chunk(traffic, run, 0)     # pure: tasks, valid events, Kafka messages
    summary = simulate(traffic, run, settings)  # produce every chunk to settings.topic

Modules, by concern:

- :mod:`~pipeline.simulate.profile`: the traffic profile (the policy file's ``simulation:``
  section) and its validation;
- :mod:`~pipeline.simulate.traffic`: the deterministic traffic model (runs, chunks, tasks,
  events);
- :mod:`~pipeline.simulate.bad_messages`: the catalogue of contract-breaking messages
  (``--bad-fraction``);
- :mod:`~pipeline.simulate.summary`: exact counts of what a run sent (``--summary-json``);
- :mod:`~pipeline.simulate.producers`: the producer processes (SDK -> Kafka);
- :mod:`~pipeline.simulate.cli`: the ``modelmeter simulate`` verb.
"""

from pipeline.simulate.bad_messages import BAD_KINDS, bad_message
from pipeline.simulate.producers import simulate, worker_count
from pipeline.simulate.profile import (
    SimFeedback,
    SimModel,
    SimRole,
    SimulationProfile,
    load_profile,
    read_profile,
)
from pipeline.simulate.summary import TOKEN_KINDS, Summary, summarize
from pipeline.simulate.traffic import (
    CHUNK_EVENTS,
    Chunk,
    SimRun,
    SimTask,
    Traffic,
    generate_chunk,
    iter_chunks,
    load_traffic,
)

__all__ = [
    "BAD_KINDS",
    "CHUNK_EVENTS",
    "TOKEN_KINDS",
    "Chunk",
    "SimFeedback",
    "SimModel",
    "SimRole",
    "SimRun",
    "SimTask",
    "SimulationProfile",
    "Summary",
    "Traffic",
    "bad_message",
    "generate_chunk",
    "iter_chunks",
    "load_profile",
    "load_traffic",
    "read_profile",
    "simulate",
    "summarize",
    "worker_count",
]
