"""schemas/events.v1.schema.json is the JSON Schema exported from the pydantic models."""

from __future__ import annotations

import json

from pipeline.contract import SCHEMA_PATH, export_json_schema, main, render_json_schema


def test_committed_schema_equals_the_export():
    """The committed file equals the export; re-run `python -m pipeline.contract --write` if not."""
    assert SCHEMA_PATH.exists(), f"{SCHEMA_PATH} missing: run python -m pipeline.contract --write"
    assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == export_json_schema()
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_json_schema()


def test_schema_states_the_contract_rules():
    """The export carries the discriminator, strict integers, bounds and no extra fields."""
    schema = export_json_schema()
    assert schema["discriminator"]["propertyName"] == "event_type"
    llm = schema["$defs"]["LlmCall"]
    assert llm["additionalProperties"] is False
    assert llm["properties"]["input_tokens"] == {
        **llm["properties"]["input_tokens"],
        "type": "integer",
        "minimum": 0,
        "maximum": 100_000_000,
    }
    assert llm["properties"]["schema_version"]["const"] == 1
    assert llm["properties"]["event_type"]["const"] == "llm_call"
    assert set(llm["required"]) >= {
        "event_id",
        "event_type",
        "schema_version",
        "occurred_at",
        "task_id",
        "input_tokens",
        "output_tokens",
    }
    assert "cache_read_tokens" not in llm["required"]
    assert llm["allOf"][0]["then"]["required"] == ["escalation_trigger"]
    assert schema["$defs"]["TaskFeedback"]["additionalProperties"] is False


def test_check_flags_a_stale_file(tmp_path, capsys):
    """`--check` exits 1 on a stale file and 0 after `--write`."""
    path = tmp_path / "events.v1.schema.json"
    path.write_text("{}\n", encoding="utf-8")
    assert main(["--check", "--path", str(path)]) == 1
    assert main(["--write", "--path", str(path)]) == 0
    assert main(["--check", "--path", str(path)]) == 0
    assert "stale" in capsys.readouterr().err
