"""``collect claude-code`` without a broker: the counting rules over a fixture tree written
from the documented format, roles, checkpoints, rewritten files, settling, the mapping file
and the CLI's errors. (End to end through the broker: tests/integration.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from pipeline._exceptions import ConfigError
from pipeline.cli import main
from pipeline.collect.checkpoint import load_state
from pipeline.collect.claude_code import Call, TranscriptReader, event_id_of
from pipeline.collect.cli import Collector
from pipeline.collect.sources import load_sources
from pipeline.policy import load_policy
from tests.fixtures.claude_code import (
    EXPECTED_CALLS,
    EXPECTED_DUPLICATES,
    EXPECTED_SKIPPED,
    EXPECTED_UNKNOWN,
    GLM,
    KINDS,
    S3,
    SOURCES_YAML,
    RecordingProducer,
    age,
    assistant,
    expected_sums,
    t,
    usage,
    write_jsonl,
    write_tree,
)
from tests.fixtures.kafka_broker import REPO_ROOT

POLICY = load_policy(REPO_ROOT / "schemas" / "routing_policy.yaml")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "projects"
    write_tree(root)
    (tmp_path / "sources.yaml").write_text(SOURCES_YAML, encoding="utf-8")
    return root


def collector(tree: Path, *roots: Path, settle: float = 5.0) -> Collector:
    return Collector(
        roots or [tree],
        mapping=load_sources(tree.parent / "sources.yaml"),
        policy=POLICY,
        state_path=tree.parent / "state" / "checkpoints.json",
        settle_seconds=settle,
    )


def run(c: Collector) -> RecordingProducer:
    producer = RecordingProducer()
    c.scanner.scan()
    c.send_settled(producer)
    return producer


def by_message(c: Collector, events) -> dict[str, object]:
    ids = {call.event_id: call.key for call in c.reader.calls.values()}
    out = {}
    for e in events:
        key = ids[e.event_id]
        out[key[0] if key[2] == "" else key[1]] = e
    return out


def test_each_call_is_counted_once_with_its_largest_counts(tree):
    c = collector(tree)
    events = run(c).events
    got = by_message(c, events)
    assert len(events) == len({e.event_id for e in events}) == len(EXPECTED_CALLS)
    for msg, (model, role, escalated, tokens) in EXPECTED_CALLS.items():
        e = got[msg]
        assert (e.model, e.role, e.escalated) == (model, role, escalated), msg
        assert (
            e.input_tokens,
            e.output_tokens,
            e.cache_read_tokens,
            e.cache_write_5m_tokens,
            e.cache_write_1h_tokens,
        ) == tokens, msg
    sums: Counter = Counter()
    for e in events:
        for kind in KINDS:
            sums[(e.model, e.role, kind)] += getattr(e, f"{kind}_tokens")
    assert sums == expected_sums()
    assert c.reader.stats.duplicates == EXPECTED_DUPLICATES


def test_skipped_lines_are_counted_by_reason_and_unknown_shapes_with_their_version(tree):
    c = collector(tree)
    run(c)
    stats = c.reader.stats
    assert {k: v for k, v in stats.skipped.items() if k != "not an API call"} == EXPECTED_SKIPPED
    assert dict(stats.unknown) == EXPECTED_UNKNOWN
    summary = c.summary()
    assert "record type 'hologram' (Claude Code 9.9.9) 1" in summary
    assert "<synthetic> model 1" in summary and "API error 1" in summary
    assert "10 calls sent" in summary and "7 duplicate lines collapsed" in summary
    assert "unassigned 2" in summary


def test_providers_escalation_and_the_unattributed_trigger(tree):
    c = collector(tree)
    got = by_message(c, run(c).events)
    assert got["msg_A1"].provider == "zai" and got["msg_B1"].provider == "anthropic"
    assert got["msg_E2"].provider == "zai"  # glm- prefix
    escalated = {m for m, e in got.items() if e.escalated}
    assert escalated == {"msg_B1", "msg_B2", "msg_D2"}  # premium model of a role with one
    assert {got[m].escalation_trigger for m in escalated} == {"unattributed"}
    assert got["msg_A4"].escalation_trigger is None  # orchestrator has no premium model
    assert got["msg_B1"].agent_id == "agent-a1" and got["msg_B1"].task_id != ""
    assert got["msg_A1"].agent_id.startswith("session-")


def test_event_ids_come_from_the_key_so_two_collectors_add_nothing_new(tree, tmp_path):
    first = {e.event_id for e in run(collector(tree)).events}
    other = Collector(
        [tree / "-home-dev-misc", tree / "-home-dev-shop"],  # another order, another state
        mapping=load_sources(tree.parent / "sources.yaml"),
        policy=POLICY,
        state_path=tmp_path / "other.json",
    )
    second = {e.event_id for e in run(other).events}
    assert first == second
    assert event_id_of(("msg_A1", "req_A1", "")) in first
    assert all(len(i) <= 64 for i in first)


def test_a_second_run_reads_nothing_new_and_sends_nothing(tree):
    run(collector(tree))
    state = load_state(tree.parent / "state" / "checkpoints.json")
    assert len(state.files) == 5 and state.agent_types == {"a1": "architect", "b2": "code-reviewer"}
    again = collector(tree)
    assert run(again).events == []
    assert again.reader.stats.lines == 0


def test_roles_learnt_in_an_earlier_run_apply_to_lines_appended_later(tree):
    run(collector(tree))
    path = tree / "-home-dev-shop" / "11111111-aaaa-4000-8000-000000000001" / "subagents"
    with (path / "agent-a1.jsonl").open("ab") as fh:
        fh.write(
            orjson.dumps(assistant("msg_B3", "req_B3", "s", t(9), GLM, usage(1, 2), agent="a1"))
        )
        fh.write(b"\n")
    age(tree)
    events = run(collector(tree)).events
    assert [(e.role, e.output_tokens) for e in events] == [("architect", 2)]


def test_a_truncated_rewrite_is_read_again_and_adds_only_its_new_calls(tree):
    first = {e.event_id: e for e in run(collector(tree)).events}
    path = tree / "-home-dev-misc" / f"{S3}.jsonl"
    write_jsonl(  # rewritten shorter (compaction): one old call and a new one
        path,
        [
            assistant("msg_E1", "req_E1", S3, t(30), GLM, usage(11, 22, 33)),
            assistant("msg_E9", "req_E9", S3, t(40), GLM, usage(1, 1)),
        ],
    )
    age(tree)
    again = collector(tree)
    events = run(again).events
    assert again.scanner.rewritten == 1
    assert {e.event_id for e in events} - set(first) == {event_id_of(("msg_E9", "req_E9", ""))}
    for e in events:
        if e.event_id in first:
            assert e == first[e.event_id]  # the same event: counted once downstream


def test_the_last_call_of_a_busy_file_waits_until_it_settles(tree):
    path = tree / "-home-dev-misc" / f"{S3}.jsonl"
    call = assistant("msg_E1", "req_E1", S3, t(30), GLM, usage(11, 22, 33))
    late = assistant("msg_E2", "req_E2", S3, t(31), GLM, usage(7, 8))
    write_jsonl(path, [call, late])  # written just now: msg_E2 may still grow
    c = collector(tree, tree / "-home-dev-misc", settle=60)
    sent = {e.event_id for e in run(c).events}
    assert event_id_of(("msg_E1", "req_E1", "")) in sent
    assert event_id_of(("msg_E2", "req_E2", "")) not in sent
    checkpoint = load_state(c.state_path).files[str(path)]
    assert checkpoint.offset == len(orjson.dumps(call)) + 1  # at the pending call's line
    with path.open("ab") as fh:  # the response grows; a restarted collector reads it again
        fh.write(orjson.dumps({**late, "message": {**late["message"], "usage": usage(7, 99)}}))
        fh.write(b"\n")
    age(tree)
    events = run(collector(tree, tree / "-home-dev-misc", settle=60)).events
    assert [(e.event_id, e.output_tokens) for e in events] == [
        (event_id_of(("msg_E2", "req_E2", "")), 99)
    ]


def test_cache_writes_without_the_split_are_5_minute_writes():
    call = Call(("m", "r", ""), "s", None, "claude-opus-4-1", None, "p", [1, 2, 3, 400, 0, 0])  # type: ignore[arg-type]
    assert call.tokens()["cache_write_5m_tokens"] == 400
    call.counts = [1, 2, 3, 400, 100, 300]
    assert call.tokens()["cache_write_5m_tokens"] == 100
    assert call.tokens()["cache_write_1h_tokens"] == 300


def test_odd_usage_values_are_unknown_shapes_not_crashes(tmp_path):
    reader = TranscriptReader(load_sources(REPO_ROOT / "schemas" / "sources.yaml").claude_code)
    bad = assistant("m", "r", "s", t(1), GLM, usage(1, 2))
    bad["message"]["usage"]["input_tokens"] = "12"
    lines = [
        orjson.dumps(bad),
        orjson.dumps({**bad, "timestamp": "yesterday"}),
        b"[1, 2]",
        b"{not json",
        orjson.dumps({**bad, "message": "text"}),
    ]
    read = reader.read_lines(b"\n".join(lines) + b"\n", offset=0, project="p")
    assert read.last_key is None and reader.calls == {}
    assert sum(reader.stats.unknown.values()) == 5
    assert ("usage input_tokens is not a token count", "2.0.55") in reader.stats.unknown


def test_bad_mapping_file_names_file_and_line(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(SOURCES_YAML.replace("  roles:\n", "  roles:\n    agent_typo: {}\n"))
    with pytest.raises(ConfigError, match=r"sources.yaml:\d+: claude_code.roles.agent_typo"):
        load_sources(path)
    path.write_text("providers: []\n")
    with pytest.raises(ConfigError, match="claude_code: required section missing"):
        load_sources(path)


def test_cli_errors_are_one_line_with_exit_2(tree, tmp_path, capsys):
    base = ["collect", "claude-code", "--state", str(tmp_path / "s.json"), "--no-progress"]
    assert main([*base, "--path", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [\n")
    assert main([*base, "--path", str(tree), "--sources", str(bad)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("modelmeter: error:") and "bad.yaml:" in err and len(err.splitlines()) == 1
    )
    # a transcript that cannot be read as one (here: a symbolic link, never followed)
    (tree / "-home-dev-misc" / "link.jsonl").symlink_to(tree / "-home-dev-misc" / f"{S3}.jsonl")
    assert main([*base, "--path", str(tree), "--sources", str(tree.parent / "sources.yaml")]) == 2
    err = capsys.readouterr().err
    assert "link.jsonl: cannot read the transcript" in err and len(err.splitlines()) == 1


def test_follow_sends_new_calls_once_their_key_settles(tree):
    import threading
    import time

    from pipeline.collect.cli import follow

    c = collector(tree, tree / "-home-dev-misc", settle=1.0)
    producer = RecordingProducer()
    c.scanner.scan()
    c.send_settled(producer)
    assert len(producer.events) == 2
    stop = threading.Event()
    thread = threading.Thread(target=follow, args=(c, producer, stop), daemon=True)
    thread.start()
    try:
        time.sleep(0.5)  # the watcher is up
        path = tree / "-home-dev-misc" / "44444444-dddd-4000-8000-000000000004.jsonl"
        grow = assistant("msg_F1", "req_F1", "s4", t(50), GLM, usage(3, 1))
        write_jsonl(path, [grow])
        time.sleep(0.1)
        with path.open("ab") as fh:  # the same response, streamed on: larger counts
            fh.write(orjson.dumps({**grow, "message": {**grow["message"], "usage": usage(3, 50)}}))
            fh.write(b"\n")
        deadline = time.monotonic() + 20
        while len(producer.events) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert [(e.output_tokens, e.event_id) for e in producer.events[2:]] == [
        (50, event_id_of(("msg_F1", "req_F1", "")))
    ]
    assert c.reader.stats.late_updates == 0
