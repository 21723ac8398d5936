"""``collect claude-code`` end to end through the real broker: a fixture tree of transcripts
(subagents, streamed responses, a sidechain copy, a resumed session, a cut-off last line) ->
``collect`` -> ``consume`` -> ``build``: the warehouse's token sums per (model, role, token
kind) are the hand-computed ones, and a second run over the same tree (one file rewritten
shorter in between) changes nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest

from tests.fixtures.claude_code import (
    EXPECTED_CALLS,
    KINDS,
    S3,
    SOURCES_YAML,
    age,
    expected_sums,
    write_tree,
)
from tests.fixtures.consume import consume_and_build, modelmeter

pytestmark = pytest.mark.kafka


def collect_consume_build(settings, tree: Path, tmp_path: Path) -> str:
    proc = modelmeter(
        settings,
        "collect",
        "claude-code",
        "--path",
        str(tree),
        "--sources",
        str(tmp_path / "sources.yaml"),
        "--state",
        str(tmp_path / "state.json"),
    )
    assert proc.returncode == 0, proc.stderr
    consume_and_build(settings)
    return proc.stderr


def warehouse(settings) -> tuple[Counter, list[tuple]]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        sums: Counter = Counter()
        for model, role, *tokens in con.execute(
            "select model, role, sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),"
            " sum(cache_write_5m_tokens), sum(cache_write_1h_tokens)"
            " from fct_llm_calls group by model, role"
        ).fetchall():
            for kind, n in zip(KINDS, tokens, strict=True):
                if n:
                    sums[(model, role, kind)] += int(n)
        rows = con.execute(
            "select event_id, role, model, escalated, escalation_trigger, is_priced, cost_usd"
            " from fct_llm_calls order by event_id"
        ).fetchall()
    finally:
        con.close()
    return sums, rows


def test_transcripts_reach_the_warehouse_once_with_the_hand_computed_sums(make_settings, tmp_path):
    settings = make_settings()
    tree = tmp_path / "projects"
    write_tree(tree)
    (tmp_path / "sources.yaml").write_text(SOURCES_YAML, encoding="utf-8")

    summary = collect_consume_build(settings, tree, tmp_path)
    assert "10 calls sent" in summary and "7 duplicate lines collapsed" in summary
    assert "record type 'hologram' (Claude Code 9.9.9) 1" in summary
    sums, rows = warehouse(settings)
    assert sums == +expected_sums()
    assert len(rows) == len(EXPECTED_CALLS)
    escalated = [r for r in rows if r[3]]
    assert len(escalated) == 3 and {r[4] for r in escalated} == {"unattributed"}
    assert all(r[5] and r[6] is not None for r in rows)  # every fixture model has a price

    # a second run over the same tree, one file rewritten shorter meanwhile: nothing changes
    path = tree / "-home-dev-misc" / f"{S3}.jsonl"
    path.write_bytes(path.read_bytes().split(b"\n", 1)[0] + b"\n")
    age(tree)
    collect_consume_build(settings, tree, tmp_path)
    assert warehouse(settings) == (sums, rows)
