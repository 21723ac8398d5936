"""The lake writer in a child process: :class:`SinkProcess` runs a
:class:`~pipeline.consumer.sink.Sink` there (the second core: validation and Parquet writing in
the child, Kafka polling and commits in the parent) behind the same methods.

This module imports no writer library: the child imports pyarrow, the event models and
msgspec after the fork, while the parent goes on connecting to Kafka.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from pipeline._exceptions import PipelineError
from pipeline.consumer.batches import Flushed, RawBatch
from pipeline.settings import Settings

__all__ = ["SinkProcess"]

_GC_THRESHOLD = 10_000  # gen-0 garbage collection threshold of the poller and the writer


def tune_gc() -> None:
    """For a process that makes many short-lived objects per event (kafka-python's records in
    the poller, validation tuples in the writer): with the default gen-0 threshold (700) the
    collector ran every few dozen events, and each older-generation pass walked every
    module object loaded at start-up. Objects alive now are frozen (no collection walks
    them again, nor unshares the pages a forked writer inherited) and gen 0 is collected
    every 10k allocations, which measurably shortens both the poll and the write per event."""
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLD, *gc.get_threshold()[1:])


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies, so that no orphan keeps writing the
    lake after the consumer was killed (the next consumer's recovery must see a still lake)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _NoPandas:
    """Import hook for the lake writer process: ``import pandas`` fails there.

    pyarrow imports pandas (if installed) on the first ``pa.array`` call only to check
    whether the input is a pandas object; the writer never gets one. Refusing the import
    spares the writer pandas' start-up CPU and resident memory."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not used by the modelmeter lake writer")


def _worker(conn: Any, settings: Settings, options: dict[str, Any]) -> None:
    _die_with_parent()
    if "pandas" not in sys.modules:  # forked before anything imported it (the normal case)
        sys.meta_path.insert(0, _NoPandas)
    tune_gc()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    sink = None
    try:
        from pipeline.consumer.sink import DeadLetter, Sink

        sink = Sink(settings, dead_letter=DeadLetter(settings), **options)
        tune_gc()  # again: the modules imported here since the fork
        conn.send(("ready", None))
        while True:
            if not conn.poll(0.2):
                if os.getppid() != parent:
                    return
                out = sink.tick()
                if out:
                    conn.send(("flushed", out))
                continue
            op, arg = conn.recv()
            if op == "add":
                out = sink.add(arg) + sink.tick()
                if out:
                    conn.send(("flushed", out))
            elif op == "flush":
                conn.send(("flush-done", sink.flush(arg)))
            elif op == "redeliver":
                conn.send(("redeliver-done", sink.redeliver(arg)))
            elif op == "forget":
                sink.forget(arg)
            elif op == "stop":
                return
    except EOFError:
        return
    except PipelineError as exc:
        conn.send(("error", exc))
    except BaseException as exc:  # report anything, so the parent exits with one line
        conn.send(("error", PipelineError(f"lake writer failed: {type(exc).__name__}: {exc}")))
    finally:
        if sink is not None:
            sink.close()


class SinkProcess:
    """A :class:`Sink` in a child process. Create it before any Kafka client (it forks).

    Requests go to the child through a small bounded queue and a sender thread: a poll's
    batch (megabytes) is far larger than the socket buffer, so a direct ``send`` would hold
    the poller until the writer has finished the previous batch and read this one; with the
    thread, polling the next batch overlaps the writer's work (the queue bounds the memory).
    """

    _SEND_QUEUE = 2  # batches waiting for the writer, at most

    def __init__(self, settings: Settings, **options: Any) -> None:
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=_worker,
            args=(child, settings, options),
            name="modelmeter-lake-writer",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._ready: list[Flushed] = []
        self._send_error: BaseException | None = None
        self._outbox: queue.Queue[tuple[str, Any] | None] = queue.Queue(self._SEND_QUEUE)
        self._sender = threading.Thread(
            target=self._send_loop, name="modelmeter-lake-send", daemon=True
        )
        self._sender.start()
        # no waiting for the writer's "ready": its start-up (imports, dead-letter producer)
        # overlaps the poller's Kafka connection; a failed start-up is raised by the next
        # call that reads its answers (add, tick, flush)

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            if self._send_error is not None:
                continue  # the writer is gone: drop, the caller raises on its next call
            try:
                self._conn.send(item)
            except (OSError, EOFError) as exc:
                self._send_error = exc

    def _send(self, op: str, arg: Any) -> None:
        if self._send_error is not None:
            raise PipelineError("lake writer process died") from None
        self._outbox.put((op, arg))

    def _take(self) -> tuple[str, Any]:
        """One message of the writer (blocking): ready, flushed, flush-done; errors raised."""
        try:
            op, arg = self._conn.recv()
        except EOFError:
            raise PipelineError("lake writer process died") from None
        if op == "error":
            raise arg
        return op, arg

    def _recv(self) -> tuple[str, Any]:
        """The writer's next answer (blocking); its start-up notice is taken in passing."""
        while True:
            op, arg = self._take()
            if op != "ready":
                return op, arg

    def _drain(self) -> None:
        while self._conn.poll(0):
            op, arg = self._take()
            if op == "flushed":
                self._ready.extend(arg)

    def add(self, batch: RawBatch) -> list[Flushed]:
        self._send("add", batch)
        return self.completed()

    def completed(self) -> list[Flushed]:
        """Flushes finished since the last call (non-blocking)."""
        self._drain()
        out, self._ready = self._ready, []
        return out

    def tick(self) -> list[Flushed]:
        return self.completed()

    def flush(self, partitions: Iterable[int] | None = None) -> list[Flushed]:
        self._send("flush", None if partitions is None else list(partitions))
        while True:
            op, arg = self._recv()
            if op == "flushed":
                self._ready.extend(arg)
            elif op == "flush-done":
                out, self._ready = self._ready + arg, []
                return out

    def redeliver(self, paths: Iterable[PurePath]) -> int:
        """:meth:`Sink.redeliver <pipeline.consumer.sink.Sink.redeliver>` in the writer."""
        self._send("redeliver", list(paths))
        while True:
            op, arg = self._recv()
            if op == "flushed":
                self._ready.extend(arg)
            elif op == "redeliver-done":
                return int(arg)

    def forget(self, partitions: Iterable[int]) -> None:
        with contextlib.suppress(PipelineError):  # a dead writer holds nothing
            self._send("forget", list(partitions))

    def close(self) -> None:
        with contextlib.suppress(PipelineError):
            self._send("stop", None)
        self._outbox.put(None)
        self._sender.join(timeout=30)
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()
