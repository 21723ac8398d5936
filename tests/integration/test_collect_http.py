"""``collect http`` end to end through the real broker: the OpenTelemetry SDK's OTLP/HTTP
span exporter sends GenAI spans, Claude Code-shaped log events arrive as OTLP protobuf and
JSON (one batch re-sent, one malformed record), LiteLLM payloads as JSON lines; then
``consume`` and ``build``: fct_llm_calls holds each distinct call once, with the token sums
per role and model that were sent."""

from __future__ import annotations

import gzip
from collections import Counter

import duckdb
import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from pipeline.cli import setting_args
from tests.fixtures.collect_http import (
    cc_attributes,
    litellm_payload,
    otlp_json_logs,
    post,
    start_collector,
)
from tests.fixtures.consume import ENV, consume_and_build

pytestmark = pytest.mark.kafka


def test_otel_claude_code_and_litellm_calls_land_once_with_the_sent_sums(make_settings, tmp_path):

    settings = make_settings()
    proc, url = start_collector(setting_args(settings), tmp_path, ENV)
    expected: Counter = Counter()  # (role, model, kind) -> tokens
    try:
        # Claude Code-shaped log events: protobuf (gzip) for two roles, two models
        batches = []
        for b, role in enumerate(["architect", "implementer", "critic"]):
            records = []
            for i in range(10):
                model = "claude-opus-4-1" if i == 9 and role == "architect" else "glm-4.5"
                attrs = cc_attributes(
                    session=f"s-{role}",
                    sequence=i,
                    model=model,
                    input_tokens=100 + i,
                    output_tokens=10 + b,
                    cache_read=1000,
                    cache_creation=i,
                    request_id=f"req-{role}-{i}",
                )
                records.append({"attributes": attrs})
                expected[(role, model, "input")] += 100 + i
                expected[(role, model, "output")] += 10 + b
                expected[(role, model, "cache_read")] += 1000
                expected[(role, model, "cache_write_5m")] += i
            batches.append(otlp_json_logs(records, {"modelmeter.role": role}))
        for body in batches:
            message = json_format.ParseDict(
                body, ExportLogsServiceRequest(), ignore_unknown_fields=True
            )
            status, answer = post(
                f"{url}/v1/logs",
                gzip.compress(message.SerializeToString()),
                "application/x-protobuf",
                {"Content-Encoding": "gzip"},
            )
            assert status == 200, answer
            assert not ExportLogsServiceResponse.FromString(answer).HasField("partial_success")
        # the sender retries the first batch (as JSON this time): counted once
        status, answer = post(f"{url}/v1/logs", orjson.dumps(batches[0]), "application/json")
        assert status == 200 and answer in (b"{}", b"{\n}"), answer

        # a malformed record among good ones: refused with its reason, the rest kept
        mixed = otlp_json_logs(
            [
                {"attributes": cc_attributes(session="s-mixed", sequence=1, input_tokens=7)},
                {
                    "attributes": cc_attributes(
                        session="s-mixed", sequence=2, input_tokens="7 tokens"
                    )
                },
            ],
            {"modelmeter.role": "orchestrator"},
        )
        expected[("orchestrator", "glm-4.5", "input")] += 7
        expected[("orchestrator", "glm-4.5", "output")] += 20
        status, answer = post(f"{url}/v1/logs", orjson.dumps(mixed), "application/json")
        assert status == 200
        partial = orjson.loads(answer)["partialSuccess"]
        assert partial["rejectedLogRecords"] == "1" and "input_tokens" in partial["errorMessage"]

        # GenAI spans from the OpenTelemetry SDK's own OTLP/HTTP exporter (protobuf)
        provider = TracerProvider(resource=Resource.create({"service.name": "integrator"}))
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces"))
        )
        tracer = provider.get_tracer("test-genai")
        for i in range(5):
            with tracer.start_as_current_span("chat glm-4.5-air") as span:
                span.set_attribute("gen_ai.operation.name", "chat")
                span.set_attribute("gen_ai.provider.name", "openai")
                span.set_attribute("gen_ai.request.model", "glm-4.5-air")
                span.set_attribute("gen_ai.usage.input_tokens", 500 + i)
                span.set_attribute("gen_ai.usage.output_tokens", 30)
                span.set_attribute("gen_ai.usage.cache_read.input_tokens", 200)
            expected[("integrator", "glm-4.5-air", "input")] += 300 + i
            expected[("integrator", "glm-4.5-air", "output")] += 30
            expected[("integrator", "glm-4.5-air", "cache_read")] += 200
        with tracer.start_as_current_span("invoke_agent") as span:  # not a call
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
            span.set_attribute("gen_ai.request.model", "glm-4.5-air")
            span.set_attribute("gen_ai.usage.input_tokens", 99999)
        assert provider.force_flush(30_000)
        provider.shutdown()

        # LiteLLM as JSON lines, one payload sent twice
        payloads = [
            litellm_payload(f"ll-{i}", prompt_tokens=400, cached=100, tags=["role:critic"])
            for i in range(4)
        ]
        for _ in range(4):
            expected[("critic", "glm-4.5", "input")] += 300
            expected[("critic", "glm-4.5", "output")] += 50
            expected[("critic", "glm-4.5", "cache_read")] += 100
        body = b"\n".join(orjson.dumps(p) for p in [*payloads, payloads[0]])
        status, answer = post(f"{url}/v1/litellm", body, "application/x-ndjson")
        assert status == 200 and orjson.loads(answer) == {"accepted": 5, "refused": []}

        # the prometheus counters saw it
        status, metrics = post(f"{url}/v1/unknown", b"{}", "application/json")
        assert status == 404
        import urllib.request

        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert (
            'modelmeter_collect_records_total{outcome="refused",reason="bad number",source="otel_logs"} 1.0'
            in text
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    consume_and_build(settings)
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        rows = con.execute(
            "select role, model, sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),"
            " sum(cache_write_5m_tokens), count(*), bool_and(is_priced)"
            " from fct_llm_calls group by role, model"
        ).fetchall()
    finally:
        con.close()
    got: Counter = Counter()
    calls = 0
    for role, model, inp, out, read, write, n, priced in rows:
        calls += n
        assert priced, (role, model)
        for kind, value in (
            ("input", inp),
            ("output", out),
            ("cache_read", read),
            ("cache_write_5m", write),
        ):
            if value:
                got[(role, model, kind)] += int(value)
    assert got == +expected
    assert calls == 30 + 1 + 5 + 4


def test_status_codes_token_size_and_per_event_results(make_settings, tmp_path):
    settings = make_settings()
    env = {**ENV, "MODELMETER_COLLECT_TOKEN": "s3cret-token"}
    proc, url = start_collector([*setting_args(settings), "--max-body-mb", "0.01"], tmp_path, env)
    auth = {"Authorization": "Bearer s3cret-token"}
    try:
        assert post(f"{url}/v1/events", b"[]", "application/json")[0] == 401
        bad = {"Authorization": "Bearer wrong"}
        assert post(f"{url}/v1/events", b"[]", "application/json", bad)[0] == 401
        assert post(f"{url}/v1/nothing", b"[]", "application/json", auth)[0] == 404
        status, reason = post(f"{url}/v1/logs", b"{oops", "application/json", auth)
        assert status == 400 and reason.decode().count("\n") == 1 and b"not JSON" in reason
        big = gzip.compress(b" " * 100_000)  # small on the wire, too large once unpacked
        status, _ = post(
            f"{url}/v1/litellm", big, "application/json", {**auth, "Content-Encoding": "gzip"}
        )
        assert status == 413
        assert post(f"{url}/v1/litellm", b"x" * 20_000, "application/json", auth)[0] == 413
        good = {
            "event_id": "ev-1",
            "event_type": "llm_call",
            "schema_version": 1,
            "occurred_at": "2026-01-05T10:00:00Z",
            "agent_id": "a",
            "task_id": "t",
            "role": "critic",
            "provider": "zai",
            "model": "glm-4.5",
            "input_tokens": 5,
            "output_tokens": 1,
        }
        body = orjson.dumps(good) + b"\n" + orjson.dumps({**good, "input_tokens": "5"}) + b"\n"
        status, answer = post(f"{url}/v1/events", body, "application/x-ndjson", auth)
        result = orjson.loads(answer)
        assert status == 200 and result["accepted"] == 1 and result["refused"] == 1
        assert (
            result["results"][1]["status"] == "refused"
            and "input_tokens" in result["results"][1]["reason"]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "s3cret-token" not in (tmp_path.glob("collector-port-*.log").__next__()).read_text()
