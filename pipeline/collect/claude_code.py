"""Claude Code session transcripts -> distinct API calls (docs/sources.md, "Claude Code
transcripts").

::

    reader = TranscriptReader(load_sources("schemas/sources.yaml").claude_code)
    reader.read_lines(path, data, offset=0, project="-home-me-shop")   # bytes of a *.jsonl
    for call in reader.unemitted(): ...                                  # Call records

The rules (each has a test in tests/unit/test_collect_claude_code.py):

- A call is an ``assistant`` line with ``message.usage``; its key is (``message.id``,
  ``requestId``), or (``sessionId``, ``message.id``) when ``requestId`` is missing.
- A response written as several lines (content blocks, streaming snapshots) repeats its key
  with growing counts: each count keeps its largest value (not the first, not the sum).
- The same key in a sidechain copy, a resumed or a copied session is the same call: once.
- ``<synthetic>`` models, API-error lines and assistant lines without usage are skipped and
  counted by reason; record types of the mapping's ``known_record_types`` carry no call.
- Anything else (an unknown record type, a usage line whose fields are not what this reader
  knows) is counted with the Claude Code ``version`` of the line: never a crash, never silent.
- The ``event_id`` is a hash of the key: a re-scan, a restart or two collectors add nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.collect.sources import ClaudeCodeMapping
from pipeline.contract import MAX_FUTURE, MAX_TOKENS, MIN_OCCURRED_AT

__all__ = ["Call", "ReadStats", "TranscriptReader", "event_id_of"]
#: Tool calls that start a subagent, whose ``input.subagent_type`` names its type.
AGENT_TOOLS = frozenset({"Agent", "Task"})
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
_SPLIT_FIELDS = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")

Key = tuple[str, str, str]


def event_id_of(key: Key) -> str:
    """The event id of a call: ``cc-`` and 40 hex digits of a hash of its key."""
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=20).hexdigest()
    return f"cc-{digest}"


@dataclass(slots=True)
class Call:
    """One distinct API call, its counts the largest seen over the lines of its key."""

    key: Key
    session_id: str
    agent: str | None  # the subagent's agentId, None on the main chain
    model: str
    occurred_at: dt.datetime
    project: str
    counts: list[int]  # input, output, cache read, cache write (total), 5m, 1h
    emitted: bool = False

    @property
    def event_id(self) -> str:
        return event_id_of(self.key)

    def tokens(self) -> dict[str, int]:
        """The contract's five token fields. Without the 5m/1h split (or with a split that
        does not add up) the cache writes not stated as 1-hour ones are 5-minute writes."""
        inp, out, read, write, w5m, w1h = self.counts
        write = max(write, w5m + w1h)
        return {
            "input_tokens": inp,
            "output_tokens": out,
            "cache_read_tokens": read,
            "cache_write_5m_tokens": write - w1h,
            "cache_write_1h_tokens": w1h,
        }


@dataclass
class ReadStats:
    """What the lines read so far held."""

    lines: int = 0
    usage_lines: int = 0
    calls: int = 0
    duplicates: int = 0
    late_updates: int = 0  # a larger count for a call already sent (follow mode)
    skipped: Counter[str] = field(default_factory=Counter)
    unknown: Counter[tuple[str, str]] = field(default_factory=Counter)  # (what, version)


class _Unknown(Exception):
    """A line whose shape this reader does not know."""


@dataclass(slots=True)
class FileRead:
    """Where reading a file got to: ``end`` (after the last complete line read), its last
    call's key and the offset of that key's first line in this file."""

    end: int
    last_key: Key | None = None
    last_key_start: int = 0
    incomplete_tail: bool = False


class TranscriptReader:
    """Collects the distinct calls of the transcript lines it is given, and the role hints."""

    def __init__(self, mapping: ClaudeCodeMapping, *, now: dt.datetime | None = None) -> None:
        self.mapping = mapping
        self.known_types = mapping.known_record_types
        self.calls: dict[Key, Call] = {}
        self.stats = ReadStats()
        self.agent_types: dict[str, str] = {}  # agentId -> subagent type
        self.agent_settings: dict[str, str] = {}  # sessionId -> `claude --agent NAME`
        self._tool_types: dict[str, str] = {}  # Agent/Task tool_use id -> subagent_type
        self._latest = (now or dt.datetime.now(dt.UTC)) + MAX_FUTURE

    # -- reading ---------------------------------------------------------------------------

    def read_lines(
        self, data: bytes, *, offset: int, project: str, agent: str | None = None
    ) -> FileRead:
        """Read the complete lines of ``data`` (the bytes of a file from ``offset`` on).
        ``agent``: the agentId a subagent transcript's name gives."""
        result = FileRead(end=offset)
        start = 0
        size = len(data)
        while start < size:
            stop = data.find(b"\n", start)
            if stop < 0:
                result.incomplete_tail = bool(data[start:].strip())
                break
            line = data[start:stop]
            if line.strip():
                key = self._line(line, project, agent)
                if key is not None and key != result.last_key:
                    result.last_key, result.last_key_start = key, offset + start
            start = stop + 1
            result.end = offset + start
        return result

    def _line(self, line: bytes, project: str, agent: str | None) -> Key | None:
        stats = self.stats
        stats.lines += 1
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            stats.unknown[("not JSON", "?")] += 1
            return None
        if not isinstance(rec, dict):
            stats.unknown[("not a JSON object", "?")] += 1
            return None
        kind = rec.get("type")
        try:
            if kind == "assistant":
                return self._assistant(rec, project, agent)
            if kind not in self.known_types:
                raise _Unknown(f"record type {str(kind)[:40]!r}")
            if kind == "agent-setting":
                self._agent_setting(rec)
            elif kind == "user" and "toolUseResult" in rec:
                self._agent_result(rec)
            stats.skipped["not an API call"] += 1
        except _Unknown as exc:
            version = rec.get("version")
            stats.unknown[(str(exc), version[:32] if isinstance(version, str) else "?")] += 1
        return None

    def _assistant(self, rec: dict[str, Any], project: str, agent: str | None) -> Key | None:
        stats = self.stats
        message = rec.get("message")
        if not isinstance(message, dict):
            raise _Unknown("assistant line without a message object")
        self._agent_calls(message.get("content"))
        model = message.get("model")
        if model == "<synthetic>":
            stats.skipped["<synthetic> model"] += 1
            return None
        if rec.get("isApiErrorMessage") is True:
            stats.skipped["API error"] += 1
            return None
        usage = message.get("usage")
        if usage is None:
            stats.skipped["no usage"] += 1
            return None
        if not isinstance(usage, dict):
            raise _Unknown("message.usage is not an object")
        counts = [_count(usage, name) for name in _USAGE_FIELDS]
        split = usage.get("cache_creation")
        if isinstance(split, dict):
            counts += [_count(split, name) for name in _SPLIT_FIELDS]
        elif split is None:
            counts += [0, 0]
        else:
            raise _Unknown("message.usage.cache_creation is not an object")
        model = _text(model, "model")
        message_id = _text(message.get("id"), "message.id")
        session_id = _text(rec.get("sessionId"), "sessionId")
        request_id = rec.get("requestId")
        if request_id is not None and not isinstance(request_id, str):
            raise _Unknown("requestId is not a string")
        key: Key = (message_id, request_id, "") if request_id else (session_id, message_id, "s")
        stats.usage_lines += 1
        call = self.calls.get(key)
        if call is not None:
            stats.duplicates += 1
            old = call.counts
            if call.emitted and any(c > o for c, o in zip(counts, old, strict=True)):
                stats.late_updates += 1
            call.counts = [max(c, o) for c, o in zip(counts, old, strict=True)]
            return key
        occurred_at = self._timestamp(rec.get("timestamp"))
        line_agent = rec.get("agentId")
        if not isinstance(line_agent, str) or not line_agent:
            line_agent = agent
        self.calls[key] = Call(
            key, session_id, line_agent, model[:128], occurred_at, project, counts
        )
        stats.calls += 1
        return key

    def _timestamp(self, value: object) -> dt.datetime:
        if not isinstance(value, str):
            raise _Unknown("usage line without a timestamp")
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Unknown("timestamp not ISO 8601") from None
        if at.tzinfo is None:
            raise _Unknown("timestamp without an offset")
        at = at.astimezone(dt.UTC)
        if not MIN_OCCURRED_AT <= at <= self._latest:
            raise _Unknown("timestamp out of range")
        return at

    # -- role hints ------------------------------------------------------------------------

    def _agent_setting(self, rec: dict[str, Any]) -> None:
        name, session = rec.get("agentSetting"), rec.get("sessionId")
        if isinstance(name, str) and name and isinstance(session, str):
            self.agent_settings[session] = name

    def _agent_calls(self, content: object) -> None:
        """Remember the subagent type of each Agent/Task tool call."""
        if not isinstance(content, list):
            return
        for block in content:
            if (
                isinstance(block, dict)
                and block.get("type") == "tool_use"
                and block.get("name") in AGENT_TOOLS
            ):
                args = block.get("input")
                kind = args.get("subagent_type") if isinstance(args, dict) else None
                if isinstance(kind, str) and kind and isinstance(block.get("id"), str):
                    self._tool_types[block["id"]] = kind

    def _agent_result(self, rec: dict[str, Any]) -> None:
        """A tool result naming the agentId a tool call started: that agent's type."""
        result = rec.get("toolUseResult")
        agent = result.get("agentId") if isinstance(result, dict) else None
        message = rec.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(agent, str) or not isinstance(content, list):
            return
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                kind = self._tool_types.get(str(block.get("tool_use_id")))
                if kind:
                    self.agent_types.setdefault(agent, kind)

    def agent_meta(self, agent: str, data: bytes) -> None:
        """An ``agent-<agentId>.meta.json``: its ``agentType`` is the subagent's type."""
        try:
            meta = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.stats.unknown[("agent meta file not JSON", "?")] += 1
            return
        kind = meta.get("agentType") if isinstance(meta, dict) else None
        if isinstance(kind, str) and kind:
            self.agent_types[agent] = kind

    # -- roles and output ------------------------------------------------------------------

    def role_of(self, call: Call, roles: frozenset[str] | set[str]) -> str | None:
        """The call's role: the transcript's hint, then the mapping; None when nothing tells
        (the caller records the policy's unresolved role)."""
        mapping = self.mapping
        hint = (
            self.agent_types.get(call.agent)
            if call.agent
            else self.agent_settings.get(call.session_id)
        )
        if hint:
            if hint in roles:
                return hint
            if hint in mapping.agent_types:
                return mapping.agent_types[hint]
        return mapping.project_role(call.project) or mapping.models.get(call.model)

    def unemitted(self, pending: set[Key] | None = None) -> Iterator[Call]:
        """The calls not emitted yet, except the ``pending`` ones (their key may still grow)."""
        for key, call in self.calls.items():
            if not call.emitted and (pending is None or key not in pending):
                yield call


def _count(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise _Unknown(f"usage {name} is not a token count")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise _Unknown(f"usage line without a printable {name}")
    return value
