"""``modelmeter collect claude-code [--path DIR ...] [--follow]``: Claude Code transcripts to
the usage topic, each API call once (docs/sources.md).

A backfill reads every transcript from its checkpoint, sends each settled call as an
``llm_call`` through the SDK (event id = a hash of the call's key), waits for the broker's
acknowledgement, then saves the checkpoints; ``--follow`` then watches the tree (watchfiles)
and sends each call once its key has settled (a later call in the file, or the file idle
for ``--settle-seconds``). Progress goes to stderr; the summary ends the run.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.collect.checkpoint import load_state, save_state
from pipeline.collect.claude_code import Call, TranscriptReader
from pipeline.collect.records import identifier
from pipeline.collect.sources import SourceMapping, load_sources
from pipeline.collect.tree import TreeScanner
from pipeline.policy import Policy, load_policy
from pipeline.resources import default_data_file
from pipeline.safe_text import visible

__all__ = ["run_claude_code_cli", "Collector", "default_state_path"]


def default_state_path() -> Path:
    return Path.home() / ".local" / "state" / "modelmeter" / "claude-code-checkpoints.json"


class Collector:
    """A reader, a scanner and the sending of settled calls; usable without the CLI."""

    def __init__(
        self,
        roots: Iterable[Path],
        *,
        mapping: SourceMapping,
        policy: Policy,
        state_path: Path,
        settle_seconds: float = 5.0,
    ) -> None:
        self.mapping = mapping
        self.policy = policy
        self.state_path = state_path
        self.state = load_state(state_path)
        self.reader = TranscriptReader(mapping.claude_code)
        self.scanner = TreeScanner(roots, self.reader, self.state, settle_seconds=settle_seconds)
        self.roles = frozenset(policy.roles)
        self.sent = 0
        self.by_role: dict[str, int] = {}

    def event_fields(self, call: Call) -> dict[str, Any]:
        """The ``llm_call`` fields of a call (for :meth:`UsageProducer.llm_call`)."""
        # nothing names a role: the policy's unresolved role (landed and flagged, never dropped)
        role = self.reader.role_of(call, self.roles) or self.policy.unresolved_role
        provider = self.mapping.provider_of(call.model)
        spec = self.policy.roles.get(role)
        premium = spec.premium if spec is not None else None
        escalated = (
            premium is not None and premium.model == call.model and premium.provider == provider
        )
        agent = f"agent-{call.agent}" if call.agent else f"session-{call.session_id}"
        return {
            "event_id": call.event_id,
            "occurred_at": call.occurred_at,
            "agent_id": identifier(agent),
            "task_id": identifier(call.session_id),
            "role": role,
            "provider": provider,
            "model": call.model,
            "escalated": escalated,
            # a transcript never says why a call was escalated
            "escalation_trigger": self.policy.unresolved_trigger if escalated else None,
            **call.tokens(),
        }

    def send_settled(self, producer: Any) -> int:
        """Send every settled call not sent yet, wait for the broker, save the checkpoints."""
        calls = list(self.reader.unemitted(self.scanner.pending_keys()))
        for call in calls:
            fields = self.event_fields(call)
            producer.llm_call(**fields)
            self.by_role[fields["role"]] = self.by_role.get(fields["role"], 0) + 1
        producer.flush()
        for call in calls:
            call.emitted = True
        self.sent += len(calls)
        self.scanner.commit()
        save_state(self.state_path, self.state)
        return len(calls)

    def summary(self) -> str:
        stats = self.reader.stats
        skipped = ", ".join(f"{why} {n:,}" for why, n in sorted(stats.skipped.items())) or "none"
        unknown = (
            ", ".join(
                f"{what} (Claude Code {version}) {n:,}"
                for (what, version), n in sorted(stats.unknown.items())
            )
            or "none"
        )
        roles = ", ".join(f"{role} {n:,}" for role, n in sorted(self.by_role.items())) or "none"
        lines = [
            f"collect claude-code: {self.sent:,} calls sent from {stats.lines:,} lines of "
            f"{len(self.scanner.cursors):,} files; {stats.duplicates:,} duplicate lines collapsed",
            f"  lines skipped: {skipped}",
            f"  unknown line shapes: {unknown}",
            f"  calls by role: {roles}",
        ]
        unassigned = self.policy.unresolved_role
        if self.by_role.get(unassigned):
            lines.append(
                f"  {self.by_role[unassigned]:,} calls with role {unassigned}: map them in "
                f"{self.mapping.path} (claude_code.roles)"
            )
        if self.scanner.rewritten:
            lines.append(f"  {self.scanner.rewritten:,} files shrank or were rewritten: read again")
        if stats.late_updates:
            lines.append(
                f"  {stats.late_updates:,} calls grew after they were sent (raise --settle-seconds)"
            )
        return "\n".join(visible(line) for line in lines)


class _Progress:
    """A progress line on stderr: files, lines, calls/s (redrawn on a terminal)."""

    def __init__(self, collector: Collector, total: int, enabled: bool) -> None:
        self.collector, self.total, self.enabled = collector, total, enabled
        self.files = 0
        self.start = self.last = time.monotonic()
        self.tty = sys.stderr.isatty()

    def tick(self) -> None:
        self.files += 1
        now = time.monotonic()
        if self.enabled and (now - self.last >= (0.2 if self.tty else 5.0)):
            self.last = now
            self.show(end="\r" if self.tty else "\n")

    def show(self, end: str = "\n") -> None:
        stats = self.collector.reader.stats
        rate = stats.calls / max(time.monotonic() - self.start, 1e-6)
        print(
            f"collect: files {self.files:,}/{self.total:,}, lines {stats.lines:,}, "
            f"calls {stats.calls:,} ({rate:,.0f} calls/s)",
            end=end,
            file=sys.stderr,
            flush=True,
        )


def follow(collector: Collector, producer: Any, stop: threading.Event | None = None) -> None:
    """Watch the roots and send each call once its key settles, until ``stop`` is set."""
    from watchfiles import watch

    step_ms = max(int(collector.scanner.settle_seconds * 500), 200)
    for changes in watch(
        *collector.scanner.roots,
        stop_event=stop,
        yield_on_timeout=True,
        rust_timeout=step_ms,
        raise_interrupt=False,
    ):
        changed = {Path(p) for _, p in changes if p.endswith(".jsonl")}
        if changed:
            collector.scanner.scan(only=changed)
        if any(not c.emitted for c in collector.reader.calls.values()):
            collector.send_settled(producer)


def run_claude_code_cli(args: argparse.Namespace, settings: Any) -> int:
    from pipeline.sdk import UsageProducer

    roots = [Path(p).expanduser() for p in (args.path or ["~/.claude/projects"])]
    mapping = load_sources(args.sources or default_data_file("sources.yaml"))
    policy = load_policy(settings.policy)
    state_path = Path(args.state).expanduser() if args.state else default_state_path()
    collector = Collector(
        roots,
        mapping=mapping,
        policy=policy,
        state_path=state_path,
        settle_seconds=args.settle_seconds,
    )
    files = collector.scanner.files()
    progress = _Progress(collector, len(files), not args.no_progress)
    collector.scanner.scan(progress=progress.tick)
    if not args.no_progress:
        progress.show()
    with UsageProducer(settings) as producer:
        collector.send_settled(producer)
        print(collector.summary(), file=sys.stderr)
        if args.follow:
            print("collect: following new lines (Ctrl-C to stop)", file=sys.stderr)
            try:
                follow(collector, producer)
            finally:
                print(collector.summary(), file=sys.stderr)
    return 0
