"""What a simulation run sent, counted exactly (``modelmeter simulate --summary-json``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.simulate.traffic import Chunk
from pipeline.token_kinds import TOKEN_KINDS

__all__ = ["TOKEN_KINDS", "Summary", "summarize"]


@dataclass(slots=True)
class Summary:
    """Counts of a run, JSON-able with :meth:`as_dict` (``--summary-json``)."""

    valid_events: int = 0
    llm_call_events: int = 0
    task_feedback_events: int = 0
    duplicates: int = 0
    bad_messages: int = 0
    tasks: int = 0
    escalated_tasks: int = 0
    escalated_calls: int = 0
    error_calls: int = 0
    tokens: Counter[str] = field(default_factory=Counter)
    bad_kinds: Counter[str] = field(default_factory=Counter)
    escalations_by_trigger: Counter[str] = field(default_factory=Counter)
    calls_by_model: Counter[str] = field(default_factory=Counter)

    def add(self, chunk: Chunk) -> None:
        self.duplicates += chunk.duplicates
        self.bad_messages += sum(chunk.bad_kinds.values())
        self.bad_kinds.update(chunk.bad_kinds)
        self.tasks += len(chunk.tasks)
        for task in chunk.tasks:
            if task.trigger:
                self.escalated_tasks += 1
                self.escalations_by_trigger[task.trigger] += 1
        for ev in chunk.events:
            self.valid_events += 1
            if ev["event_type"] == "llm_call":
                self.llm_call_events += 1
                self.escalated_calls += ev["escalated"]
                self.error_calls += ev["status"] == "error"
                self.calls_by_model[ev["model"]] += 1
                for kind in TOKEN_KINDS:
                    self.tokens[kind] += ev[f"{kind}_tokens"]
            else:
                self.task_feedback_events += 1

    def merge(self, other: Summary) -> None:
        for name in (
            "valid_events",
            "llm_call_events",
            "task_feedback_events",
            "duplicates",
            "bad_messages",
            "tasks",
            "escalated_tasks",
            "escalated_calls",
            "error_calls",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("tokens", "bad_kinds", "escalations_by_trigger", "calls_by_model"):
            getattr(self, name).update(getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid_events": self.valid_events,
            # ids are unique by construction; duplicates re-send an id already counted here
            "distinct_event_ids": self.valid_events,
            "llm_call_events": self.llm_call_events,
            "task_feedback_events": self.task_feedback_events,
            "duplicates": self.duplicates,
            "bad_messages": self.bad_messages,
            "messages": self.valid_events + self.duplicates + self.bad_messages,
            "tasks": self.tasks,
            "escalated_tasks": self.escalated_tasks,
            "escalated_calls": self.escalated_calls,
            "error_calls": self.error_calls,
            "tokens": {kind: self.tokens[kind] for kind in TOKEN_KINDS},
            "calls_by_model": dict(sorted(self.calls_by_model.items())),
            "escalations_by_trigger": dict(sorted(self.escalations_by_trigger.items())),
            "bad_kinds": dict(sorted(self.bad_kinds.items())),
        }


def summarize(chunks: Iterable[Chunk]) -> Summary:
    """The counts of ``chunks``."""
    summary = Summary()
    for chunk in chunks:
        summary.add(chunk)
    return summary
