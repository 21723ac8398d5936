"""``collect http`` decoding and mapping, with payloads in the sources' documented shapes:
OTLP JSON and protobuf (Claude Code's api_request events, GenAI spans), LiteLLM's
StandardLoggingPayload; roles, providers, tokens, event ids, refusals."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.collect import otlp
from pipeline.collect.litellm import litellm_outcomes
from pipeline.collect.records import BodyError, CallBuilder, RecordError, json_records
from pipeline.collect.sources import load_sources
from pipeline.policy import load_policy
from tests.fixtures.collect_http import (
    cc_attributes,
    json_attributes,
    litellm_payload,
    otlp_json_logs,
)
from tests.fixtures.kafka_broker import REPO_ROOT

MAPPING = load_sources(REPO_ROOT / "schemas" / "sources.yaml")
POLICY = load_policy(REPO_ROOT / "schemas" / "routing_policy.yaml")
BUILDER = CallBuilder(MAPPING, POLICY)
assert MAPPING.otel is not None and MAPPING.litellm is not None
OTEL, LITELLM = MAPPING.otel, MAPPING.litellm


def logs(body: dict, content_type: str = "application/json") -> list:
    raw = orjson.dumps(body)
    request = otlp.decode("logs", raw, content_type)
    return list(otlp.log_outcomes(request, OTEL, BUILDER))  # type: ignore[arg-type]


def test_a_claude_code_event_in_otlp_json_becomes_one_call_with_the_cache_mapped():
    body = otlp_json_logs(
        [{"attributes": cc_attributes(input_tokens=100, cache_read=5000, cache_creation=300)}],
        resource={"service.name": "claude-code", "modelmeter.role": "architect"},
    )
    [fields] = logs(body)
    assert fields["role"] == "architect" and fields["provider"] == "zai"
    assert fields["model"] == "glm-4.5" and fields["task_id"] == "sess-1"
    # Claude Code's input excludes the cache; a write without a 5m/1h split is a 5m write
    assert (
        fields["input_tokens"],
        fields["output_tokens"],
        fields["cache_read_tokens"],
        fields["cache_write_5m_tokens"],
        fields["cache_write_1h_tokens"],
    ) == (100, 20, 5000, 300, 0)
    assert fields["occurred_at"] == dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
    assert fields["latency_ms"] == 1500 and not fields["escalated"]
    assert "cost" not in "".join(fields)  # a source's cost is never carried


def test_the_same_record_in_protobuf_and_json_has_the_same_event_id_and_fields():
    body = otlp_json_logs([{"attributes": cc_attributes()}], resource={"modelmeter.role": "critic"})
    as_json = logs(body)
    message = otlp.decode("logs", orjson.dumps(body), "application/json")
    as_proto = logs_proto(message.SerializeToString())
    assert as_json == as_proto and as_json[0]["event_id"].startswith("otel-")


def logs_proto(raw: bytes) -> list:
    request = otlp.decode("logs", raw, "application/x-protobuf")
    return list(otlp.log_outcomes(request, OTEL, BUILDER))  # type: ignore[arg-type]


def test_event_ids_follow_session_and_sequence_then_request_id():
    a = logs(otlp_json_logs([{"attributes": cc_attributes(sequence=1)}]))[0]["event_id"]
    b = logs(otlp_json_logs([{"attributes": cc_attributes(sequence=2)}]))[0]["event_id"]
    again = logs(otlp_json_logs([{"attributes": cc_attributes(sequence=1, output_tokens=20)}]))
    assert a != b and again[0]["event_id"] == a
    no_sequence = cc_attributes(request_id="req_9")
    del no_sequence["event.sequence"]
    c = logs(otlp_json_logs([{"attributes": no_sequence}]))[0]["event_id"]
    d = logs(otlp_json_logs([{"attributes": {**no_sequence, "session.id": "other"}}]))
    assert c == d[0]["event_id"]  # the request id alone names the call


def test_roles_from_attributes_in_order_else_unassigned_never_guessed():
    def role(resource: dict, **record: str) -> str:
        return logs(otlp_json_logs([{"attributes": cc_attributes(**record)}], resource))[0]["role"]

    assert role({"modelmeter.role": "integrator", "service.name": "critic"}) == "integrator"
    assert role({"service.name": "critic"}) == "critic"
    assert role({"modelmeter.role": "architect"}, **{"modelmeter.role": "critic"}) == "critic"
    assert role({"modelmeter.role": "archtect", "service.name": "claude-code"}) == "unassigned"
    assert role({}) == "unassigned"


def test_premium_model_is_an_escalation_with_the_unresolved_trigger_unless_stated():
    premium = cc_attributes(model="claude-opus-4-1")
    [fields] = logs(otlp_json_logs([{"attributes": premium}], {"modelmeter.role": "architect"}))
    assert fields["provider"] == "anthropic" and fields["escalated"]
    assert fields["escalation_trigger"] == POLICY.unresolved_trigger
    stated = {
        **premium,
        "modelmeter.escalated": "true",
        "modelmeter.escalation_trigger": "security_sensitive",
        "modelmeter.task_id": "T-7",
        "modelmeter.policy_version": "2026.11.1",
    }
    [fields] = logs(otlp_json_logs([{"attributes": stated}], {"modelmeter.role": "architect"}))
    assert fields["escalation_trigger"] == "security_sensitive"
    assert fields["task_id"] == "T-7" and fields["policy_version"] == "2026.11.1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"input_tokens": "12x"}, "input_tokens: expected an integer"),
        ({"model": ""}, "no model"),
        ({"output_tokens": "-3"}, "output_tokens: expected an integer"),
        ({"event.timestamp": "yesterday"}, "event.timestamp: not an ISO 8601 time"),
    ],
)
def test_a_malformed_record_is_refused_with_a_reason_and_the_others_kept(change, reason):
    body = otlp_json_logs(
        [
            {"attributes": cc_attributes(sequence=1)},
            {"attributes": {**cc_attributes(sequence=2), **change}},
        ]
    )
    good, bad = logs(body)
    assert isinstance(good, dict)
    assert isinstance(bad, RecordError) and reason in bad.reason


def test_records_that_are_not_calls_are_skipped():
    body = otlp_json_logs(
        [{"body": "claude_code.user_prompt", "attributes": {"event.name": "user_prompt"}}]
    )
    assert logs(body) == [None]


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"{not json", "application/json", "not JSON"),
        (b"[1]", "application/json", "JSON object"),
        (b'{"resourceLogs": 5}', "application/json", "not an OTLP logs request"),
        (b"\xff\xff\xff", "application/x-protobuf", "protobuf"),
        (b"{}", "text/plain", "content type"),
    ],
)
def test_a_body_that_cannot_be_parsed_is_one_body_error(body, content_type, problem):
    with pytest.raises(BodyError, match=problem):
        otlp.decode("logs", body, content_type)


def genai_span(span_id: str, **attrs) -> dict:
    return {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": span_id,
        "name": "chat glm-4.5",
        "kind": 3,
        "startTimeUnixNano": "1767607200000000000",
        "endTimeUnixNano": "1767607202500000000",
        "attributes": json_attributes(attrs),
        "status": {},
    }


def spans(*items: dict, resource: dict | None = None) -> list:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": json_attributes(resource or {})},
                "scopeSpans": [{"scope": {"name": "openlit"}, "spans": list(items)}],
            }
        ]
    }
    request = otlp.decode("traces", orjson.dumps(body), "application/json")
    return list(otlp.span_outcomes(request, OTEL, BUILDER))  # type: ignore[arg-type]


def test_genai_spans_subtract_the_cache_from_the_input_and_skip_agent_spans():
    call = genai_span(
        "eee19b7ec3c1b174",
        **{
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-opus-4",
            "gen_ai.response.model": "claude-opus-4-1",
            "gen_ai.usage.input_tokens": 1500,
            "gen_ai.usage.output_tokens": 80,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 200,
            "gen_ai.agent.name": "integrator",
            "gen_ai.usage.cost": 0.5,
        },
    )
    agent = genai_span(
        "aaa19b7ec3c1b174",
        **{
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.request.model": "claude-opus-4-1",
            "gen_ai.usage.input_tokens": 1500,
            "gen_ai.usage.output_tokens": 80,
        },
    )
    openllmetry = genai_span(
        "bbb19b7ec3c1b174",
        **{
            "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "glm-4.5-air",
            "gen_ai.usage.prompt_tokens": 300,
            "gen_ai.usage.completion_tokens": 7,
            "gen_ai.usage.cache_read_input_tokens": 100,
        },
    )
    first, skipped, third = spans(call, agent, openllmetry, resource={"service.name": "bot"})
    assert skipped is None
    assert (first["role"], first["provider"], first["model"]) == (
        "integrator",
        "anthropic",
        "claude-opus-4-1",
    )
    assert (first["input_tokens"], first["cache_read_tokens"], first["cache_write_5m_tokens"]) == (
        300,
        1000,
        200,
    )
    assert first["latency_ms"] == 2500 and first["escalated"]
    assert (third["provider"], third["input_tokens"], third["cache_read_tokens"]) == (
        "zai",
        200,
        100,
    )
    assert third["role"] == "unassigned"
    # the span id is the key: the same span re-sent is the same event
    assert spans(call)[0]["event_id"] == first["event_id"]


def test_a_genai_span_whose_cache_exceeds_its_input_is_refused():
    bad = genai_span(
        "ccc19b7ec3c1b174",
        **{
            "gen_ai.request.model": "glm-4.5",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 1,
            "gen_ai.usage.cache_read.input_tokens": 50,
        },
    )
    [outcome] = spans(bad)
    assert isinstance(outcome, RecordError) and outcome.kind == "inconsistent tokens"


def test_hex_ids_of_otlp_json_are_the_protobuf_ids():
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [genai_span("eee19b7ec3c1b174")]}]}]}
    request = otlp.decode("traces", orjson.dumps(body), "application/json")
    assert isinstance(request, ExportTraceServiceRequest)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    assert (
        json_format.MessageToDict(request)["resourceSpans"][0]["scopeSpans"][0]["spans"][0][
            "startTimeUnixNano"
        ]
        == "1767607200000000000"
    )


def litellm(body: bytes) -> list:
    return list(litellm_outcomes(json_records(body), LITELLM, BUILDER))


def test_litellm_payloads_in_each_log_format():
    one = litellm_payload("a", prompt_tokens=1000, cached=400, tags=["role:critic", "task:T-1"])
    two = litellm_payload("b", model="claude-opus-4-1", provider="anthropic", team_alias="x")
    single = litellm(orjson.dumps(one))
    array = litellm(orjson.dumps([one, two]))
    ndjson = litellm(orjson.dumps(one) + b"\n" + orjson.dumps(two) + b"\n")
    assert single == array[:1] and array == ndjson
    a, b = array
    assert (a["role"], a["task_id"], a["provider"], a["model"]) == (
        "critic",
        "T-1",
        "zai",
        "glm-4.5",
    )
    assert (a["input_tokens"], a["cache_read_tokens"], a["output_tokens"]) == (600, 400, 50)
    assert a["latency_ms"] == 1500 and a["event_id"].startswith("litellm-")
    assert a["occurred_at"] == dt.datetime.fromtimestamp(1_767_607_200.25, dt.UTC)
    assert b["role"] == "unassigned" and b["task_id"] == "trace-b" and b["escalated"] is False


def test_litellm_team_and_key_aliases_map_to_roles():
    mapping = LITELLM.__class__(
        role_tag_prefix="role:",
        task_tag_prefix="task:",
        teams={"platform": "architect"},
        key_aliases={"rev-key": "critic"},
        provider_names={},
    )
    payloads = [
        litellm_payload("t", team_alias="platform", key_alias="rev-key"),
        litellm_payload("k", key_alias="rev-key"),
    ]
    roles = [o["role"] for o in litellm_outcomes(payloads, mapping, BUILDER)]
    assert roles == ["architect", "critic"]


def test_litellm_refuses_bad_payloads_one_by_one():
    good = orjson.dumps(litellm_payload("ok"))
    no_id = orjson.dumps({**litellm_payload(), "id": None})
    text = good + b"\nnot json\n" + no_id + b"\n" + orjson.dumps(litellm_payload("x", cached=5000))
    ok, not_json, missing, inconsistent = litellm(text)
    assert isinstance(ok, dict)
    assert isinstance(not_json, RecordError) and "line 2" in not_json.reason
    assert isinstance(missing, RecordError) and "no id" in missing.reason
    assert isinstance(inconsistent, RecordError) and inconsistent.kind == "inconsistent tokens"
    with pytest.raises(BodyError):
        json_records(b"   ")
