"""The simulator's producer processes: chunks of traffic through the SDK to Kafka.

    summary = simulate(load_traffic(settings.policy), run, settings, workers=2)

``workers`` processes (spawned, not forked) share the chunks of a run; each sends its chunks
through :class:`pipeline.UsageProducer` and reports their counts to the parent. The messages
are the same whatever the number of processes or the Kafka client.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections.abc import Callable, Sequence
from typing import Any

from pipeline._exceptions import ConfigError, PipelineError
from pipeline.simulate.summary import Summary
from pipeline.simulate.traffic import SimRun, Traffic, generate_chunk, window

__all__ = ["simulate", "worker_count"]

# Larger batches than the SDK's agent-side defaults: the simulator sends bursts, not a trickle.
_PRODUCER_OPTIONS: dict[str, Any] = {
    "linger_ms": 20,
    "batch_size": 1024 * 1024,
    "client_id": "modelmeter-simulate",
}
_MIN_EVENTS_PER_WORKER = 40_000


def _produce(
    traffic: Traffic,
    run: SimRun,
    settings: Any,
    indexes: Sequence[int],
    report: Callable[[Summary, int], None],
) -> None:
    """Send the chunks ``indexes`` through the SDK; ``report(chunk summary, messages)`` per chunk."""
    from pipeline.sdk import UsageProducer

    # The SDK's default partitioner: murmur2 of the key (task_id), as the Java client and
    # librdkafka's murmur2_random, so a task's events share a partition whatever the transport.
    with UsageProducer(
        settings, create_topics=False, max_buffer=200_000, **_PRODUCER_OPTIONS
    ) as meter:
        # Valid events are pre-serialised (their contract validity is a unit test of the
        # traffic model): validating each one again here would halve the throughput.
        for index in indexes:
            chunk = generate_chunk(traffic, run, index)
            meter.send_raw_many(chunk.messages)
            part = Summary()
            part.add(chunk)
            report(part, len(chunk.messages))


def _worker(traffic: Traffic, run: SimRun, settings: Any, indexes: list[int], out: Any) -> None:
    try:
        _produce(traffic, run, settings, indexes, lambda part, n: out.put(("chunk", part, n)))
        out.put(("done", None, 0))
    except PipelineError as exc:
        out.put(("error", f"{exc}", exc.exit_code))
    except BaseException as exc:  # reported by the parent as one line
        out.put(("error", f"{type(exc).__name__}: {exc}", 1))


def worker_count(run: SimRun, workers: int | None) -> int:
    """Producer processes for ``run``: as asked, or one per 40k events up to the CPU count."""
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, run.events // _MIN_EVENTS_PER_WORKER, 4))
    elif workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    return max(1, min(workers, run.chunks or 1))


def simulate(
    traffic: Traffic,
    run: SimRun,
    settings: Any,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Produce ``run``'s traffic to ``settings.topic``; returns what was sent.

    ``workers`` producer processes share the chunks (default: one per 40k events, at most
    the CPU count); the messages are the same whatever the number. ``progress(messages)`` is
    called as each chunk is handed to the producer; the return waits for the broker's acks.
    """
    from pipeline.kafka_admin import ensure_topics

    window(run)  # a window in the future fails before touching Kafka
    workers = worker_count(run, workers)
    ensure_topics(settings)
    total = Summary()

    def add(part: Summary, n: int) -> None:
        total.merge(part)
        if progress:
            progress(n)

    if workers == 1:
        _produce(traffic, run, settings, range(run.chunks), add)
        return total
    ctx = mp.get_context("spawn")  # no fork of a process that may hold client threads
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            name=f"simulate-{w}",
            daemon=True,
            args=(traffic, run, settings, list(range(w, run.chunks, workers)), out),
        )
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    running, failure = workers, None
    try:
        while running:
            try:
                kind, payload, n = out.get(timeout=1.0)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs) and out.empty():
                    dead = next(p for p in procs if p.exitcode not in (None, 0))
                    raise PipelineError(
                        f"producer process {dead.name} died (exit code {dead.exitcode})"
                    ) from None
                continue
            if kind == "chunk":
                add(payload, n)
            elif kind == "done":
                running -= 1
            else:
                failure = (payload, n)
                break
    finally:
        if failure is not None:
            for p in procs:
                p.terminate()
        for p in procs:
            p.join(timeout=30)
    if failure is not None:
        error = PipelineError(failure[0])
        error.exit_code = failure[1]
        raise error
    return total
