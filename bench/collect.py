"""The ``collect`` figure: ``modelmeter collect claude-code`` backfilling a transcript tree.

bench/run.py calls :func:`run_collect`. It writes a synthetic Claude Code tree of about N
lines (:func:`write_tree`, the shapes of docs/sources.md: several projects, sessions with
subagents under ``<session>/subagents/agent-*.jsonl`` and some ``agent-*.meta.json``,
responses streamed over several lines with growing counts, user prompts and tool results
without usage, progress/system lines, sidechain copies of main-chain responses, resumed
sessions copying earlier lines, a few ``<synthetic>``/API-error/no-usage lines and calls
without ``requestId``), files aged an hour (idle: no call held back), then times, side by
side in fresh processes, alternated ``--rounds`` times, best of each kept:

- ``collect``: ``python -m pipeline.cli collect claude-code --path DIR --state FILE
  --no-progress`` against the private broker, each run with a fresh checkpoint file and a
  fresh topic (created beforehand, as a deployed topic exists); wall time from process
  start (interpreter, imports, broker connection) until it exits, i.e. after every event is
  acknowledged and the checkpoints are saved. Checked: the summary's calls and lines, and
  the topic read back holds exactly the event ids of the generated calls, each once
  (:func:`pipeline.collect.claude_code.event_id_of` of the generator's own keys).
  Goal: >= 50,000 transcript lines/s.
- ``parse_only``: ``python bench/collect.py parse --path DIR`` - the same reading through
  the collector's public classes (:class:`pipeline.collect.cli.Collector`: its
  ``TreeScanner.scan`` and ``event_fields`` of every call), no SDK and no Kafka: what the
  backfill costs before sending.

Memory: summed PSS (and RSS, largest VmHWM) of the collector process, sampled every 100 ms.

Write a tree or run the parse side by hand::

    .venv/bin/python bench/collect.py generate --root /tmp/cc-tree --lines 200000
    .venv/bin/python bench/collect.py parse --path /tmp/cc-tree
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

__all__ = ["TreeStats", "write_tree", "run_collect"]

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent

VERSION = "2.0.55"
BASE = dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.UTC)
PROJECTS = (
    "-home-dev-shop",
    "-home-dev-platform-integration",
    "-home-dev-billing-api",
    "-srv-agents-a-checkout",
    "-srv-agents-b-search",
    "-home-dev-infra",
    "-home-dev-docs",
    "-tmp-scratch",
)
# model of a call: (model, weight)
MODELS = (("glm-4.5", 70), ("claude-opus-4-1", 20), ("glm-4.5-air", 10))
# subagent types a Task/Agent tool call names (some are policy roles, some are mapped)
AGENT_TYPES = ("Plan", "Explore", "general-purpose", "code-reviewer", "architect", "critic")
TOOLS = ("Read", "Edit", "Bash", "Grep", "Glob", "Write")
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass
class TreeStats:
    """What :func:`write_tree` wrote, counted as it wrote it."""

    root: str = ""
    projects: int = 0
    sessions: int = 0
    subagent_files: int = 0
    meta_files: int = 0
    files: int = 0
    lines: int = 0
    bytes: int = 0
    usage_lines: int = 0
    skipped_lines: int = 0  # <synthetic>, API error, assistant without usage
    copied_lines: int = 0  # sidechain and resumed-session copies of earlier responses
    # (usage lines too, counted in usage_lines)
    keys: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def calls(self) -> int:
        return len(self.keys)

    def as_dict(self) -> dict[str, Any]:
        return {
            "projects": self.projects,
            "sessions": self.sessions,
            "subagent_files": self.subagent_files,
            "meta_files": self.meta_files,
            "transcript_files": self.files,
            "lines": self.lines,
            "calls": self.calls,
            "usage_lines": self.usage_lines,
            "duplicate_usage_lines": self.usage_lines - self.calls,
            "skipped_assistant_lines": self.skipped_lines,
            "copied_lines": self.copied_lines,
            "mb": round(self.bytes / 2**20, 1),
            "mean_line_bytes": round(self.bytes / max(1, self.lines)),
        }


class _Writer:
    """One synthetic tree; deterministic for a seed."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.stats = TreeStats(root=str(root))
        # text of varied sizes, drawn from (content of messages, tool inputs and results)
        self.texts = [self._words(n) for n in (40, 120, 300, 600, 1200, 2400) for _ in range(8)]
        self.models = [m for m, w in MODELS for _ in range(w)]

    # -- small pieces ------------------------------------------------------------------

    def _words(self, n: int) -> str:
        rng = self.rng
        out: list[str] = []
        size = 0
        while size < n:
            word = "".join(rng.choice(ALPHABET[:26]) for _ in range(rng.randint(2, 9)))
            out.append(word)
            size += len(word) + 1
        return " ".join(out)[:n]

    def _id(self, prefix: str, n: int = 24) -> str:
        return prefix + "".join(self.rng.choice(ALPHABET) for _ in range(n))

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _text(self, small: bool = False) -> str:
        return self.rng.choice(self.texts[:24] if small else self.texts)

    @staticmethod
    def _ts(at: dt.datetime) -> str:
        return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # -- records -----------------------------------------------------------------------

    def _envelope(self, kind: str, session: str, at: dt.datetime, cwd: str, **extra: Any) -> dict:
        return {
            "parentUuid": self._uuid(),
            "isSidechain": False,
            "userType": "external",
            "cwd": cwd,
            "sessionId": session,
            "version": VERSION,
            "gitBranch": "main",
            "type": kind,
            "uuid": self._uuid(),
            "timestamp": self._ts(at),
            **extra,
        }

    def _user(self, session: str, at: dt.datetime, cwd: str, **extra: Any) -> dict:
        return self._envelope(
            "user",
            session,
            at,
            cwd,
            message={"role": "user", "content": self._text(small=True)},
            **extra,
        )

    def _tool_result(
        self, session: str, at: dt.datetime, cwd: str, tool_id: str, agent: str | None, **extra
    ) -> dict:
        result: dict[str, Any] = {"stdout": self._text(), "stderr": "", "interrupted": False}
        if agent is not None:
            result = {"agentId": agent, "status": "completed", "totalTokens": 1234}
        return self._envelope(
            "user",
            session,
            at,
            cwd,
            message={
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_id, "content": self._text()}
                ],
            },
            toolUseResult=result,
            **extra,
        )

    def _response(
        self,
        session: str,
        at: dt.datetime,
        cwd: str,
        *,
        spawn: str | None = None,
        **extra: Any,
    ) -> tuple[list[dict], str | None]:
        """The lines of one API call (1-4 streamed lines, counts growing) and its tool id."""
        rng, stats = self.rng, self.stats
        model = rng.choice(self.models)
        message_id = self._id("msg_01")
        request_id = self._id("req_011C") if rng.random() >= 0.05 else None
        key = (message_id, request_id, "") if request_id else (session, message_id, "s")
        stats.keys.add(key)
        inp, read = rng.randint(1, 400), rng.randint(0, 120_000)
        write = rng.choice((0, 0, 0, rng.randint(100, 20_000)))
        w1h = write if write and rng.random() < 0.2 else 0
        final_out = rng.randint(20, 4000)
        tool_id = None
        blocks: list[dict] = [{"type": "text", "text": self._text()}]
        if spawn is not None:
            tool_id = self._id("toolu_01")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": rng.choice(("Task", "Agent")),
                    "input": {"subagent_type": spawn, "prompt": self._text(small=True)},
                }
            )
        elif rng.random() < 0.6:
            tool_id = self._id("toolu_01")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": rng.choice(TOOLS),
                    "input": {"command": self._text(small=True)},
                }
            )
        n = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        lines = []
        for i in range(n):
            usage: dict[str, Any] = {
                "input_tokens": inp,
                "cache_creation_input_tokens": write,
                "cache_read_input_tokens": read,
                "output_tokens": max(1, final_out * (i + 1) // n),
                "service_tier": "standard",
            }
            if rng.random() < 0.8:
                usage["cache_creation"] = {
                    "ephemeral_5m_input_tokens": write - w1h,
                    "ephemeral_1h_input_tokens": w1h,
                }
            rec = self._envelope(
                "assistant",
                session,
                at + dt.timedelta(milliseconds=300 * i),
                cwd,
                message={
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [blocks[min(i, len(blocks) - 1)]],
                    "stop_reason": None if i < n - 1 else "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                },
                **extra,
            )
            if request_id is not None:
                rec["requestId"] = request_id
            lines.append(rec)
        stats.usage_lines += n
        return lines, tool_id

    def _skipped(self, session: str, at: dt.datetime, cwd: str) -> dict:
        """An assistant line that is no call: ``<synthetic>``, an API error, no usage."""
        self.stats.skipped_lines += 1
        kind = self.rng.randrange(3)
        message: dict[str, Any] = {
            "id": self._id("msg_01"),
            "type": "message",
            "role": "assistant",
            "model": "<synthetic>" if kind == 0 else "glm-4.5",
            "content": [{"type": "text", "text": "API Error: overloaded"}],
        }
        extra: dict[str, Any] = {}
        if kind != 2:
            message["usage"] = {"input_tokens": 0, "output_tokens": 0}
        if kind == 1:
            extra["isApiErrorMessage"] = True
        return self._envelope("assistant", session, at, cwd, message=message, **extra)

    # -- files -------------------------------------------------------------------------

    def _write(self, path: Path, records: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        path.write_bytes(data)
        self.stats.files += 1
        self.stats.lines += len(records)
        self.stats.bytes += len(data)

    def session(self, project: str, previous: list[dict] | None) -> list[dict]:
        """One session file (and its subagents'); its response lines with a requestId, for
        a later session to copy."""
        rng, stats = self.rng, self.stats
        session = self._uuid()
        cwd = "/" + project.strip("-").replace("-", "/")
        at = BASE + dt.timedelta(minutes=rng.randint(0, 20 * 24 * 60))
        lines: list[dict] = []
        if rng.random() < 0.1:
            lines.append(
                {
                    "type": "agent-setting",
                    "agentSetting": rng.choice(("integrator", "architect")),
                    "sessionId": session,
                }
            )
        if previous:  # a resumed session starts with copies of the earlier one's lines
            copied = [{**r, "sessionId": session} for r in previous[: rng.randint(2, 12)]]
            lines += copied
            stats.copied_lines += len(copied)
            stats.usage_lines += len(copied)
        copyable: list[dict] = []
        for _ in range(rng.randint(15, 90)):
            at += dt.timedelta(seconds=rng.randint(5, 90))
            lines.append(self._user(session, at, cwd))
            for _ in range(rng.choice((1, 1, 1, 2, 3))):  # calls per turn
                at += dt.timedelta(seconds=rng.randint(2, 40))
                spawn = rng.choice(AGENT_TYPES) if rng.random() < 0.05 else None
                response, tool_id = self._response(session, at, cwd, spawn=spawn)
                lines += response
                if response[0].get("requestId"):
                    copyable.append(response[-1])
                if rng.random() < 0.1:
                    lines.append(
                        self._envelope(
                            rng.choice(("progress", "system")),
                            session,
                            at,
                            cwd,
                            content=self._text(small=True),
                        )
                    )
                if rng.random() < 0.01:
                    lines.append(self._skipped(session, at, cwd))
                if tool_id is None:
                    continue
                at += dt.timedelta(seconds=rng.randint(1, 30))
                agent = None
                if spawn is not None:
                    agent = "".join(rng.choice("0123456789abcdef") for _ in range(17))
                    self.subagent(project, session, agent, spawn, at, cwd, copyable)
                lines.append(self._tool_result(session, at, cwd, tool_id, agent))
        if rng.random() < 0.3:
            lines.append({"type": "summary", "summary": self._text(small=True), "leafUuid": "x"})
        self._write(self.root / project / f"{session}.jsonl", lines)
        stats.sessions += 1
        return copyable

    def subagent(
        self,
        project: str,
        session: str,
        agent: str,
        kind: str,
        at: dt.datetime,
        cwd: str,
        parent: list[dict],
    ) -> None:
        rng, stats = self.rng, self.stats
        side: dict[str, Any] = {"isSidechain": True, "agentId": agent}
        lines: list[dict] = [self._user(session, at, cwd, **side)]
        for _ in range(rng.randint(3, 25)):
            at += dt.timedelta(seconds=rng.randint(2, 30))
            response, tool_id = self._response(session, at, cwd, **side)
            lines += response
            if tool_id is not None:
                lines.append(self._tool_result(session, at, cwd, tool_id, None, **side))
        if parent and rng.random() < 0.3:  # a sidechain copy of a main-chain response
            lines.insert(1, {**rng.choice(parent), **side})
            stats.copied_lines += 1
            stats.usage_lines += 1
        sub = self.root / project / session / "subagents"
        self._write(sub / f"agent-{agent}.jsonl", lines)
        stats.subagent_files += 1
        if rng.random() < 0.6:
            (sub / f"agent-{agent}.meta.json").write_bytes(
                orjson.dumps({"agentType": kind, "description": "bench", "spawnDepth": 1})
            )
            stats.meta_files += 1


def write_tree(root: Path, lines: int, *, seed: int = 7) -> TreeStats:
    """Write a tree of at least ``lines`` transcript lines under ``root`` (a stand-in for
    ``~/.claude/projects``), every file's mtime an hour ago; what it holds, counted."""
    writer = _Writer(Path(root), seed)
    rng = writer.rng
    previous: dict[str, list[dict]] = {}
    used: set[str] = set()
    while writer.stats.lines < lines:
        project = rng.choice(PROJECTS)
        used.add(project)
        resumed = previous.get(project) if rng.random() < 0.05 else None
        previous[project] = writer.session(project, resumed)
    writer.stats.projects = len(used)
    then = time.time() - 3600
    for path in Path(root).rglob("*"):
        os.utime(path, (then, then))
    return writer.stats


# --------------------------------------------------------------------------------------------
# the parse-only side (run as a subprocess: ``python bench/collect.py parse ...``)
# --------------------------------------------------------------------------------------------


def _parse(path: Path, sources: Path | None) -> dict[str, Any]:
    """Scan ``path`` and build every call's event fields with the collector's classes."""
    started = time.perf_counter()
    from pipeline.collect.cli import Collector
    from pipeline.collect.sources import load_sources
    from pipeline.policy import load_policy

    imported = time.perf_counter()
    collector = Collector(
        [path],
        mapping=load_sources(sources or REPO / "schemas" / "sources.yaml"),
        policy=load_policy(REPO / "schemas" / "routing_policy.yaml"),
        state_path=path.parent / f".bench-parse-{uuid.uuid4().hex}.json",  # never written
    )
    collector.scanner.scan()
    scanned = time.perf_counter()
    calls = list(collector.reader.unemitted(collector.scanner.pending_keys()))
    event_fields = collector.event_fields
    for call in calls:
        event_fields(call)
    done = time.perf_counter()
    stats = collector.reader.stats
    return {
        "lines": stats.lines,
        "calls": len(calls),
        "import_seconds": round(imported - started, 3),
        "scan_seconds": round(scanned - imported, 3),
        "fields_seconds": round(done - scanned, 3),
        "scan_lines_per_s": round(stats.lines / (scanned - imported)),
    }


# --------------------------------------------------------------------------------------------
# the figure
# --------------------------------------------------------------------------------------------

_SUMMARY = re.compile(
    r"collect claude-code: ([\d,]+) calls sent from ([\d,]+) lines of ([\d,]+) files; "
    r"([\d,]+) duplicate lines collapsed"
)


def _topic_event_ids(bootstrap: str, topic: str) -> tuple[int, set[str]]:
    """Every message of ``topic`` read back: (messages acknowledged = the sum of end
    offsets of a fresh topic, their distinct event ids)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-collect-check-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=30)
        parts = sorted(meta.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in parts
        }
        total = sum(high - low for low, high in ends.values())
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in parts])
        ids: set[str] = set()
        read = 0
        deadline = time.monotonic() + 120
        while read < total and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                value = msg.value()
                if msg.error() is None and value is not None:
                    read += 1
                    ids.add(orjson.loads(value)["event_id"])
        if read < total:
            raise RuntimeError(f"{topic}: read back {read} of {total} messages")
        return total, ids
    finally:
        consumer.close()


def _memory(timed) -> dict[str, Any]:
    return {
        "peak_pss_mb": round(timed.peak_pss_bytes / 2**20, 1),
        "peak_rss_sum_mb": round(timed.peak_rss_bytes / 2**20, 1),
        "peak_vmhwm_mb_largest_process": round(timed.peak_hwm_bytes / 2**20, 1),
    }


def run_collect(settings, workdir: Path, lines: int, rounds: int = 2) -> dict[str, Any]:
    """The ``collect`` figure (see the module's docstring)."""
    from bench.common import PYTHON, command_text, log, produce_events, run_timed
    from pipeline.collect.claude_code import event_id_of
    from pipeline.kafka_admin import ensure_topics

    root = workdir / "claude-projects"
    started = time.perf_counter()
    tree = write_tree(root, lines)
    log(
        f"collect: wrote {tree.lines:,} transcript lines ({tree.calls:,} distinct calls, "
        f"{tree.files:,} files, {tree.bytes / 2**20:.0f} MB) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    expected = {event_id_of(key) for key in tree.keys}
    bootstrap = settings.kafka_bootstrap_servers

    # A new broker answers the first idempotent producer of its life "coordinator load in
    # progress" and makes it retry, once; a broker in service never charges that.
    warm = settings.model_copy(update={"topic": f"{settings.topic}-warmup"})
    ensure_topics(warm, partitions=1)
    seconds = produce_events(bootstrap, warm.topic, [(b"warmup", b"{}")])
    log(f"collect: first idempotent producer of the broker done ({seconds:.1f} s)")

    parse_argv = [PYTHON, str(HERE), "parse", "--path", str(root)]
    parses: list[tuple[Any, dict]] = []
    collects: list[tuple[Any, dict]] = []
    for i in range(rounds):
        log(f"collect: parse-only pass {i + 1}: {command_text(parse_argv)}")
        timed = run_timed(parse_argv).check()
        result = json.loads(timed.stdout)
        if (result["lines"], result["calls"]) != (tree.lines, tree.calls):
            raise RuntimeError(f"parse-only read {result}, the tree holds {tree.as_dict()}")
        parses.append((timed, result))

        topic = f"{settings.topic}-{i + 1}-{uuid.uuid4().hex[:6]}"
        ensure_topics(settings.model_copy(update={"topic": topic}))
        state = workdir / f"collect-state-{i + 1}.json"
        argv = [
            PYTHON,
            "-m",
            "pipeline.cli",
            "collect",
            "claude-code",
            "--path",
            str(root),
            "--state",
            str(state),
            "--no-progress",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
            "--policy",
            str(settings.policy),
            "--prices",
            str(settings.prices),
        ]
        log(f"collect: backfill {i + 1}: {command_text(argv)}")
        timed = run_timed(argv).check()
        summary = _SUMMARY.search(timed.stderr)
        if summary is None:
            raise RuntimeError(f"no summary in the collector's output:\n{timed.stderr[-2000:]}")
        sent, read_lines, files, duplicates = (int(g.replace(",", "")) for g in summary.groups())
        acked, ids = _topic_event_ids(bootstrap, topic)
        check = {
            "summary_calls_sent": sent,
            "summary_lines": read_lines,
            "summary_files": files,
            "summary_duplicate_lines": duplicates,
            "topic_messages": acked,
            "topic_distinct_event_ids": len(ids),
            "event_ids_equal_generated": ids == expected,
        }
        if not (
            sent == acked == len(ids) == tree.calls
            and ids == expected
            and read_lines == tree.lines
            and files == tree.files
            and duplicates == tree.usage_lines - tree.calls
            and state.is_file()
        ):
            raise RuntimeError(f"collect run {i + 1}: {check} (tree: {tree.as_dict()})")
        collects.append((timed, check))
        log(
            f"collect: {tree.lines / timed.seconds:,.0f} lines/s "
            f"({timed.seconds:.2f} s, {acked:,} events acknowledged and read back); "
            f"parse-only {tree.lines / parses[-1][0].seconds:,.0f} lines/s"
        )

    best, check = min(collects, key=lambda run: run[0].seconds)
    best_parse, parse = min(parses, key=lambda run: run[0].seconds)
    rate = tree.lines / best.seconds
    figure: dict[str, Any] = {
        "lines": tree.lines,
        "calls": tree.calls,
        "seconds": round(best.seconds, 2),
        "lines_per_s": round(rate),
        "calls_per_s": round(tree.calls / best.seconds),
        "goal": ">= 50000 lines/s",
        "met": rate >= 50_000,
        "runs_lines_per_s": [round(tree.lines / t.seconds) for t, _ in collects],
        "cpu_seconds": round(best.cpu_seconds, 2),
        # lines per second of the collector's own CPU: what the other load of a shared
        # machine blurs least
        "lines_per_cpu_s": round(tree.lines / best.cpu_seconds),
        "memory": {
            **_memory(max((t for t, _ in collects), key=lambda t: t.peak_pss_bytes)),
            "what": "the collector process's PSS (and RSS, VmHWM) sampled every 100 ms, the "
            "highest of the runs; no goal",
        },
        "check": check,
        "command": best.command,
        "parse_only": {
            "lines_per_s": round(tree.lines / best_parse.seconds),
            "seconds": round(best_parse.seconds, 2),
            "runs_lines_per_s": [round(tree.lines / t.seconds) for t, _ in parses],
            "in_process": parse,
            "cpu_seconds": round(best_parse.cpu_seconds, 2),
            "lines_per_cpu_s": round(tree.lines / best_parse.cpu_seconds),
            "memory": _memory(max((t for t, _ in parses), key=lambda t: t.peak_pss_bytes)),
            "what": "Collector.scanner.scan() and event_fields() of every call in a fresh "
            "process (pipeline.collect's public classes), no SDK, no Kafka; wall time "
            "from process start; in_process splits it (imports, scan, event fields)",
            "command": best_parse.command,
        },
        # the share of the backfill's wall time that reading alone takes (the rest: the
        # SDK's validation and sending, acknowledgements, checkpoints)
        "parse_only_share_of_seconds": round(best_parse.seconds / best.seconds, 3),
        "tree": tree.as_dict(),
        "method": "wall time from process start until exit (imports, broker connection, "
        "reading, every event acknowledged, checkpoints saved); a fresh checkpoint file "
        "and a fresh 6-partition topic per run (created beforehand, after one "
        "idempotent message to another topic: a new broker's first idempotent producer "
        "waits once); the tree was just written, so it is in the page cache; the broker "
        "runs on the same cores; "
        f"alternated {rounds} rounds, best run of each side",
    }
    log(
        f"collect: best {figure['lines_per_s']:,} lines/s ({figure['seconds']} s), "
        f"parse-only {figure['parse_only']['lines_per_s']:,} lines/s; peak PSS "
        f"{figure['memory']['peak_pss_mb']} MB"
    )
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="collect claude-code benchmark helpers")
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write a synthetic transcript tree")
    g.add_argument("--root", type=Path, required=True)
    g.add_argument("--lines", type=int, default=200_000)
    g.add_argument("--seed", type=int, default=7)
    p = sub.add_parser("parse", help="scan a tree with the collector's classes, no Kafka")
    p.add_argument("--path", type=Path, required=True)
    p.add_argument("--sources", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "generate":
        stats = write_tree(args.root, args.lines, seed=args.seed)
        print(json.dumps(stats.as_dict()))
    else:
        print(json.dumps(_parse(args.path, args.sources)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
